"""An agent's MCP host, written with the official Python SDK (PyPI `mcp`), for Warden's tests.

It connects to an MCP server (Warden's `/mcp`, or `warden mcp … -- server` over stdio), lists the
tools, and makes the calls of a plan read from stdin (a JSON list of {"tool", "arguments"}), one
after the other. It prints JSON lines on stdout: first {"protocol", "tools"}, then one per call
{"tool", "is_error", "text", "meta"}. Anything that goes wrong at the protocol level ends it with
status 1 and the error on stderr.

    agent.py --url http://127.0.0.1:8080/mcp --token T --mode 2026-07-28 < plan.json
    agent.py --stdio -- warden mcp --instruction "…" -- node server.js /files < plan.json
    agent.py … --confirm yes   (the user answers yes to every question a held call puts to them)
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def transport(args):
    if args.stdio:
        command, *rest = args.command
        return StdioServerParameters(command=command, args=rest)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0))
    return streamable_http_client(args.url, http_client=http)


def emit(record):
    print(json.dumps(record), flush=True)


def confirmer(answer):
    """The user, answering Warden's question about a held call: yes (accept, allow) or no
    (decline). Each question is printed as a JSON line {"asked": message}."""
    from mcp import types

    async def confirm(context, params):
        emit({"asked": params.message})
        if answer == "yes":
            return types.ElicitResult(action="accept", content={"allow": True})
        return types.ElicitResult(action="decline")

    return confirm


async def run(args, plan):
    extra = {"elicitation_callback": confirmer(args.confirm)} if args.confirm else {}
    async with Client(transport(args), mode=args.mode, raise_exceptions=True, **extra) as client:
        tools = await client.list_tools()
        emit({"protocol": client.protocol_version, "tools": sorted(t.name for t in tools.tools)})
        for step in plan:
            result = await client.call_tool(step["tool"], step.get("arguments", {}))
            text = "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")
            emit({
                "tool": step["tool"],
                "is_error": bool(result.is_error),
                "text": text,
                "meta": result.meta,
            })


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a streamable HTTP endpoint")
    where.add_argument("--stdio", action="store_true", help="start the command after `--` and speak stdio")
    parser.add_argument("--token", help="sent as `Authorization: Bearer <token>`")
    parser.add_argument("--mode", default="auto", help="legacy (2025-11-25 initialize), 2026-07-28, or auto")
    parser.add_argument("--confirm", choices=["yes", "no"],
                        help="declare elicitation and answer Warden's questions about held calls")
    parser.add_argument("command", nargs="*", help="with --stdio: the server's command")
    args = parser.parse_args()
    if args.stdio and not args.command:
        parser.error("--stdio needs the command after `--`")
    plan = json.load(sys.stdin)
    try:
        asyncio.run(run(args, plan))
    except BaseException as e:  # an ExceptionGroup from the SDK's task groups included
        print(f"agent.py: {type(e).__name__}: {e!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
