#!/usr/bin/env python3
"""Wrap every tool result of a trace file the way agent frameworks frame tool output.

    scripts/wrap-traces.py STYLE IN.jsonl.gz OUT.jsonl.gz

STYLE is `delimit` (<<result>>, AgentDojo's spotlighting by delimiting), `tag`
(<data>\nresult\n</data>) or `fence` (a Markdown code fence). The eval gate replays the wrapped
traces to check that a result reads the same with or without its wrapper (issue 12, class 6).
"""
import gzip
import json
import sys

STYLES = {
    "delimit": lambda t: "<<" + t + ">>",
    "tag": lambda t: "<data>\n" + t + "\n</data>",
    "fence": lambda t: "```\n" + t + "\n```",
}


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in STYLES:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(STYLES)}}} IN.jsonl.gz OUT.jsonl.gz")
    wrap = STYLES[sys.argv[1]]
    with gzip.open(sys.argv[2], "rt") as src, gzip.open(sys.argv[3], "wt") as out:
        for line in src:
            event = json.loads(line)
            if event.get("kind") == "tool_result" and isinstance(event.get("result_text"), str):
                event["result_text"] = wrap(event["result_text"])
            out.write(json.dumps(event) + "\n")


if __name__ == "__main__":
    main()
