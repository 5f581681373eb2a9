#!/usr/bin/env python3
"""Warden conformance fixture MCP server.

Implements everything the server scenarios of the official MCP conformance
suite, npm package ``@modelcontextprotocol/conformance`` version
``0.2.0-alpha.12``, expect (tool/resource/prompt names, completions, logging,
progress, sampling, elicitation, SSE polling, the 2026-07-28 stateless wire
with ``server/discover``, ``subscriptions/listen``, caching hints and the
``input_required`` multi-round-trip flow).  Built on the official MCP Python
SDK 2.3.0 (``mcp.server.mcpserver.MCPServer``).

Run it:

    # streamable HTTP on http://127.0.0.1:N/mcp
    python server.py --port N
    # stdio (e.g. behind a stdio gateway)
    python server.py --stdio

Then point the suite at it (Node >= 22):

    node node_modules/@modelcontextprotocol/conformance/dist/index.js \
        server --url http://127.0.0.1:N/mcp --spec-version 2025-11-25

Measured directly (HTTP) against 0.2.0-alpha.12, every server scenario the
suite lists for each spec version passes: 2025-03-26 (1/1), 2025-06-18
(27/27), 2025-11-25 (33/33, incl. the pending server-sse-polling and
json-schema-2020-12) and 2026-07-28 (40/40, incl. the 14 input-required
scenarios and the pending header-validation scenarios).  See README.md
next to this file for the table and exact commands.

SIGTERM (and SIGINT) shut the server down cleanly with exit status 0 in both
modes.
"""

import argparse
import base64
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.request_state import RequestStateSecurity
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    ClientCapabilities,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import Field

warnings.filterwarnings("ignore", category=DeprecationWarning)
try:  # deprecation category used by the SDK for 2026-07-28-deprecated features
    from mcp.shared.exceptions import MCPDeprecationWarning

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

logger = logging.getLogger("conformance-fixture")

# 1x1 PNG and a minimal WAV file.
TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


# ---------------------------------------------------------------------------
# SSE resumability (SEP-1699, scenario server-sse-polling)
# ---------------------------------------------------------------------------
class InMemoryEventStore(EventStore):
    """Event store so a POST SSE stream closed mid-call can be resumed via GET + Last-Event-ID."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, Any]] = []
        self._counter = 0

    async def store_event(self, stream_id: str, message: Any) -> str:
        self._counter += 1
        event_id = str(self._counter)
        self._events.append((stream_id, event_id, message))
        if len(self._events) > 10_000:
            del self._events[:1000]
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream_id = next((s for s, e, _ in self._events if e == last_event_id), None)
        if stream_id is None:
            return None
        last = int(last_event_id)
        for s, e, message in list(self._events):
            if s == stream_id and int(e) > last and message is not None:
                await send_callback(EventMessage(message, e))
        return stream_id


# ---------------------------------------------------------------------------
# Per-session state (legacy, session-ful protocol versions)
# ---------------------------------------------------------------------------
class SessionState:
    def __init__(self) -> None:
        self.log_level: str = "debug"
        self.subscriptions: set[str] = set()


# One SessionState per SDK session object: a legacy MCP session (Mcp-Session-Id) or a
# stdio connection.  On the stateless 2026-07-28 wire every request is its own session.
_sessions: weakref.WeakKeyDictionary[Any, SessionState] = weakref.WeakKeyDictionary()


def _state(ctx: Any) -> SessionState:
    session = ctx.session
    st = _sessions.get(session)
    if st is None:
        st = _sessions[session] = SessionState()
    return st


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------
# requestState is sealed (AES-GCM) by the SDK's RequestStateBoundary and verified on every
# retry, so tampering is rejected with -32602.  A fixed key (overridable through the
# MCP_CONFORMANCE_STATE_KEY environment variable, >= 32 bytes) lets a state minted by one fixture
# process be redeemed by another, e.g. when a gateway spawns one stdio process per request.
_STATE_KEY = os.environ.get("MCP_CONFORMANCE_STATE_KEY", "warden-conformance-fixture-request-state-key-0001")

mcp = MCPServer(
    "mcp-conformance-fixture",
    version="1.0.0",
    request_state_security=RequestStateSecurity(keys=[_STATE_KEY]),
    instructions="Conformance fixture for @modelcontextprotocol/conformance 0.2.0-alpha.12",
    cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in CACHEABLE_METHODS},
    log_level="WARNING",
)


# --- plain content tools ----------------------------------------------------
@mcp.tool()
def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


@mcp.tool()
def test_image_content() -> list[ImageContent]:
    """Tests image content response"""
    return [ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")]


@mcp.tool()
def test_audio_content() -> list[AudioContent]:
    """Tests audio content response"""
    return [AudioContent(type="audio", data=TEST_AUDIO_BASE64, mime_type="audio/wav")]


@mcp.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Tests embedded resource content response"""
    return [
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://embedded-resource",
                mime_type="text/plain",
                text="This is an embedded resource content.",
            ),
        )
    ]


@mcp.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Tests response with multiple content types (text, image, resource)"""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png"),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="test://mixed-content-resource",
                mime_type="application/json",
                text='{"test": "data", "value": 123}',
            ),
        ),
    ]


@mcp.tool()
def test_error_handling() -> str:
    """Tests error response handling"""
    # ToolError -> CallToolResult(isError=true) carrying exactly this message.
    raise ToolError("This tool intentionally returns an error for testing")


# --- logging / progress -----------------------------------------------------
_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


async def _log(ctx: Context, level: str, data: Any) -> None:
    """Send notifications/message honouring the session's logging/setLevel (session-ful versions).

    On 2026-07-28 the SDK additionally drops it unless the request's _meta opted in
    with io.modelcontextprotocol/logLevel.
    """
    if _LEVELS.index(level) >= _LEVELS.index(_state(ctx).log_level):
        await ctx.log(level, data)  # type: ignore[arg-type]


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution"""
    for i, text in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if i:
            await anyio.sleep(0.05)
        await _log(ctx, "info", text)
    return "Tool with logging executed successfully"


@mcp.tool()
async def test_logging_tool(ctx: Context) -> str:
    """Emits log messages; on 2026-07-28 they are only sent when the request opted in via _meta logLevel"""
    await _log(ctx, "info", "test_logging_tool: info message")
    await _log(ctx, "warning", "test_logging_tool: warning message")
    return "Logging tool executed"


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications"""
    await ctx.report_progress(progress=0, total=100, message="Completed step 0 of 100")
    await anyio.sleep(0.05)
    await ctx.report_progress(progress=50, total=100, message="Completed step 50 of 100")
    await anyio.sleep(0.05)
    await ctx.report_progress(progress=100, total=100, message="Completed step 100 of 100")
    meta = ctx.request_context.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    return f"Progress tool completed (progressToken={token})"


# --- server -> client requests (session-ful versions) -----------------------
@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)"""
    try:
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        text = content.text if getattr(content, "type", None) == "text" else "No response"
        return f"LLM response: {text}"
    except MCPError:
        raise
    except Exception as exc:  # noqa: BLE001
        return f"Sampling not supported or error: {exc}"


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)"""
    result = await ctx.session.elicit_form(
        message,
        {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        },
        related_request_id=ctx.request_id,
    )
    return f"User response: action={result.action}, content={json.dumps(result.content or {})}"


@mcp.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values for all primitive types (SEP-1034)"""
    result = await ctx.session.elicit_form(
        "Please provide user information",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "description": "Verification status", "default": True},
            },
        },
        related_request_id=ctx.request_id,
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


@mcp.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with enum schema variations (SEP-1330)"""
    result = await ctx.session.elicit_form(
        "Please select values using different enum schema types",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Simple enum without titles",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Enum with titled options (oneOf)",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy enum with enumNames",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Multi-select without titles",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Multi-select with titled options",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
        },
        related_request_id=ctx.request_id,
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


@mcp.tool()
async def test_reconnection(ctx: Context) -> str:
    """Tests SSE polling by closing the POST stream mid-call (SEP-1699)"""
    await _log(ctx, "info", "Before disconnect")
    await ctx.close_sse_stream()
    await anyio.sleep(0.2)
    await _log(ctx, "info", "After reconnect")
    return "Reconnection test completed"


# --- JSON Schema 2020-12 (SEP-1613 / SEP-2106) ---------------------------------
JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@mcp.tool()
def json_schema_2020_12_tool() -> str:
    """Tool with JSON Schema 2020-12 features"""
    return "JSON Schema 2020-12 tool called"


_js_tool = mcp._tool_manager.get_tool("json_schema_2020_12_tool")  # pyright: ignore[reportPrivateUsage]
assert _js_tool is not None
_js_tool.parameters = JSON_SCHEMA_2020_12


# --- 2026-07-28 stateless diagnostics (server-stateless) ------------------------
@mcp.tool()
async def test_missing_capability(ctx: Context) -> str:
    """Requires the client 'sampling' capability; rejects with -32021 when undeclared"""
    caps = ctx.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="Client did not declare the required 'sampling' capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "Client declared sampling"


@mcp.tool()
async def test_streaming_elicitation(ctx: Context) -> Any:
    """Needs user input; on 2026-07-28 asks via InputRequiredResult, never a standalone request"""
    responses = ctx.input_responses or {}
    answer = responses.get("confirm")
    if isinstance(answer, ElicitResult):
        return f"Streaming elicitation completed: action={answer.action}"
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        return "Client has no elicitation capability; nothing to ask"
    return InputRequiredResult(
        input_requests={
            "confirm": ElicitRequest(
                params=ElicitRequestFormParams(
                    message="Please confirm",
                    requested_schema={
                        "type": "object",
                        "properties": {"ok": {"type": "boolean"}},
                        "required": ["ok"],
                    },
                )
            )
        }
    )


@mcp.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Publishes a tools list-changed event to subscriptions/listen streams"""
    await ctx.notify_tools_changed()
    return "tools list change published"


@mcp.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Publishes a prompts list-changed event to subscriptions/listen streams"""
    await ctx.notify_prompts_changed()
    return "prompts list change published"


@mcp.tool()
async def test_custom_header(
    region: Annotated[str, Field(description="Region, mirrored into the Mcp-Param-Region header", json_schema_extra={"x-mcp-header": "Region"})],
) -> str:
    """Tool whose 'region' argument is mirrored into an Mcp-Param-Region HTTP header (SEP-2243)"""
    return f"region={region}"


# --- 2026-07-28 input_required (SEP-2322) --------------------------------------
def _elicit(message: str, props: dict[str, Any], required: list[str]) -> ElicitRequest:
    return ElicitRequest(
        params=ElicitRequestFormParams(
            message=message,
            requested_schema={"type": "object", "properties": props, "required": required},
        )
    )


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))],
            max_tokens=max_tokens,
        )
    )


def _responses(ctx: Context) -> dict[str, Any]:
    return dict(ctx.input_responses or {})


def _elicit_content(resp: Any) -> dict[str, Any]:
    if isinstance(resp, ElicitResult) and resp.action == "accept":
        return dict(resp.content or {})
    return {}


def _sample_text(resp: Any) -> str:
    content = getattr(resp, "content", None)
    if isinstance(content, list):
        content = content[0] if content else None
    return getattr(content, "text", "") or ""


@mcp.tool()
async def test_input_required_result_elicitation(ctx: Context) -> Any:
    """Asks the user's name via an input_required elicitation, then greets them"""
    resp = _responses(ctx).get("user_name")
    if not isinstance(resp, ElicitResult):
        return InputRequiredResult(
            input_requests={"user_name": _elicit("What is your name?", {"name": {"type": "string"}}, ["name"])}
        )
    name = _elicit_content(resp).get("name", "stranger")
    return f"Hello, {name}!"


@mcp.tool()
async def test_input_required_result_sampling(ctx: Context) -> Any:
    """Asks the client to sample an LLM via input_required, then returns the answer"""
    resp = _responses(ctx).get("capital_question")
    if resp is None or isinstance(resp, ElicitResult | ListRootsResult):
        return InputRequiredResult(
            input_requests={"capital_question": _sample("What is the capital of France?", 100)}
        )
    return f"Sampling response: {_sample_text(resp)}"


@mcp.tool()
async def test_input_required_result_list_roots(ctx: Context) -> Any:
    """Asks the client for its roots via input_required, then lists them"""
    resp = _responses(ctx).get("client_roots")
    if not isinstance(resp, ListRootsResult):
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
    roots = ", ".join(str(r.uri) for r in resp.roots)
    return f"Client roots: {roots}"


@mcp.tool()
async def test_input_required_result_request_state(ctx: Context) -> Any:
    """input_required with requestState; the retry validates the echoed state"""
    resp = _responses(ctx).get("confirm")
    state = ctx.request_state
    if not isinstance(resp, ElicitResult) or state is None:
        return InputRequiredResult(
            input_requests={"confirm": _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
            request_state=json.dumps({"tool": "test_input_required_result_request_state", "round": 1}),
        )
    data = json.loads(state)
    if data.get("tool") != "test_input_required_result_request_state" or data.get("round") != 1:
        raise MCPError(code=-32602, message="Invalid requestState")
    return f"state-ok: confirmed={_elicit_content(resp).get('ok')}"


@mcp.tool()
async def test_input_required_result_multiple_inputs(ctx: Context) -> Any:
    """input_required with elicitation + sampling + roots/list in one round"""
    got = _responses(ctx)
    keys = {"user_name": ElicitResult, "greeting": None, "client_roots": ListRootsResult}
    missing = [k for k in keys if k not in got]
    if missing or ctx.request_state is None:
        return InputRequiredResult(
            input_requests={
                "user_name": _elicit("What is your name?", {"name": {"type": "string"}}, ["name"]),
                "greeting": _sample("Generate a greeting", 50),
                "client_roots": ListRootsRequest(),
            },
            request_state=json.dumps({"tool": "test_input_required_result_multiple_inputs"}),
        )
    name = _elicit_content(got["user_name"]).get("name", "?")
    greeting = _sample_text(got["greeting"])
    roots = getattr(got["client_roots"], "roots", [])
    return f"name={name}; greeting={greeting}; roots={len(roots)}"


@mcp.tool()
async def test_input_required_result_multi_round(ctx: Context) -> Any:
    """Three-round input_required flow with evolving requestState"""
    got = _responses(ctx)
    state = json.loads(ctx.request_state) if ctx.request_state else {}
    rnd = state.get("round", 0)
    if rnd == 1 and "step1" in got:
        name = _elicit_content(got["step1"]).get("name", "?")
        return InputRequiredResult(
            input_requests={
                "step2": _elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
            },
            request_state=json.dumps({"round": 2, "name": name}),
        )
    if rnd == 2 and "step2" in got:
        color = _elicit_content(got["step2"]).get("color", "?")
        return f"name={state.get('name')}, favorite color={color}"
    return InputRequiredResult(
        input_requests={"step1": _elicit("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])},
        request_state=json.dumps({"round": 1}),
    )


@mcp.tool()
async def test_input_required_result_tampered_state(ctx: Context) -> Any:
    """input_required with integrity-protected requestState (sealed by the SDK); tampering is rejected"""
    resp = _responses(ctx).get("confirm")
    if not isinstance(resp, ElicitResult) or ctx.request_state is None:
        return InputRequiredResult(
            input_requests={"confirm": _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])},
            request_state=json.dumps({"tool": "test_input_required_result_tampered_state"}),
        )
    return "state verified"


@mcp.tool()
async def test_input_required_result_capabilities(ctx: Context) -> Any:
    """Only requests input for capabilities the client declared in _meta clientCapabilities"""
    got = _responses(ctx)
    caps = ctx.client_capabilities or ClientCapabilities()
    wanted: dict[str, Any] = {}
    if caps.elicitation is not None and "user_name" not in got:
        wanted["user_name"] = _elicit("What is your name?", {"name": {"type": "string"}}, ["name"])
    if caps.sampling is not None and "greeting" not in got:
        wanted["greeting"] = _sample("Generate a greeting", 50)
    if caps.roots is not None and "client_roots" not in got:
        wanted["client_roots"] = ListRootsRequest()
    if wanted:
        return InputRequiredResult(input_requests=wanted)
    return f"Completed with inputs: {sorted(got)}"


# ---------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------
@mcp.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text_resource() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


@mcp.resource(
    "test://static-binary", name="static-binary", description="A static binary resource (PNG)", mime_type="image/png"
)
def static_binary_resource() -> bytes:
    """A static binary resource (image) for testing"""
    return base64.b64decode(TEST_IMAGE_BASE64)


@mcp.resource(
    "test://template/{id}/data",
    name="template-data",
    description="A resource template with parameter substitution",
    mime_type="application/json",
)
def template_resource(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@mcp.resource(
    "test://watched-resource", name="watched-resource", description="A subscribable resource", mime_type="text/plain"
)
def watched_resource() -> str:
    """A resource that can be subscribed to for updates"""
    return "Watched resource content"


# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------
@mcp.prompt()
def test_simple_prompt() -> list[UserMessage]:
    """A simple prompt without arguments"""
    return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]


@mcp.prompt()
def test_prompt_with_arguments(
    arg1: Annotated[str, Field(description="First test argument")],
    arg2: Annotated[str, Field(description="Second test argument")],
) -> list[UserMessage]:
    """A prompt with required arguments"""
    return [
        UserMessage(
            role="user", content=TextContent(type="text", text=f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")
        )
    ]


@mcp.prompt()
def test_prompt_with_embedded_resource(
    resourceUri: Annotated[str, Field(description="URI of the resource to embed")],  # noqa: N803
) -> list[UserMessage]:
    """A prompt that includes an embedded resource"""
    return [
        UserMessage(
            role="user",
            content=EmbeddedResource(
                type="resource",
                resource=TextResourceContents(
                    uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                ),
            ),
        ),
        UserMessage(role="user", content=TextContent(type="text", text="Please process the embedded resource above.")),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt that includes image content"""
    return [
        UserMessage(role="user", content=ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")),
        UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
    ]


@mcp.prompt()
async def test_input_required_result_prompt(ctx: Context) -> Any:
    """A prompt that first asks the user for context via input_required"""
    resp = _responses(ctx).get("user_context")
    if not isinstance(resp, ElicitResult):
        return InputRequiredResult(
            input_requests={
                "user_context": _elicit(
                    "What context should the prompt use?", {"context": {"type": "string"}}, ["context"]
                )
            }
        )
    context = _elicit_content(resp).get("context", "")
    return [UserMessage(role="user", content=TextContent(type="text", text=f"Prompt using context: {context}"))]


# ---------------------------------------------------------------------------
# Completion, logging/setLevel, resources/subscribe (session-ful versions)
# ---------------------------------------------------------------------------
@mcp.completion()
async def handle_completion(
    ref: PromptReference | ResourceTemplateReference,
    argument: CompletionArgument,
    context: CompletionContext | None,
) -> Completion:
    candidates = {
        "arg1": ["paris", "park", "party", "test-value"],
        "arg2": ["alpha", "beta", "gamma"],
        "id": ["1", "123", "42"],
    }.get(argument.name, [])
    values = [v for v in candidates if v.startswith(argument.value)] or candidates
    return Completion(values=values, total=len(values), has_more=False)


async def _set_logging_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
    _state(ctx).log_level = params.level
    return EmptyResult()


async def _subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
    _state(ctx).subscriptions.add(str(params.uri))
    return EmptyResult()


async def _unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
    _state(ctx).subscriptions.discard(str(params.uri))
    return EmptyResult()


_low = mcp._lowlevel_server  # pyright: ignore[reportPrivateUsage]
_low.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_logging_level)
_low.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
_low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)


# ---------------------------------------------------------------------------
# Entrypoints
# ---------------------------------------------------------------------------
async def _run_stdio() -> None:
    async with anyio.create_task_group() as tg:

        async def _watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    # Cancel the server; the stdin reader is a blocking worker thread that
                    # cancellation cannot interrupt, so guarantee a prompt exit(0).
                    tg.cancel_scope.cancel()
                    timer = threading.Timer(1.0, _hard_exit)
                    timer.daemon = True
                    timer.start()
                    return

        tg.start_soon(_watch_signals)
        await mcp.run_stdio_async()
        tg.cancel_scope.cancel()


def _hard_exit() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


async def _run_http(host: str, port: int) -> None:
    import uvicorn

    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        event_store=InMemoryEventStore(),
        retry_interval=100,
        host=host,
    )
    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Like uvicorn's, but without re-raising the signal after the graceful
            # shutdown, so SIGTERM/SIGINT end the process with exit status 0.
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    class _DropShutdownNoise(logging.Filter):
        # Open GET/SSE streams cut by the shutdown are expected, not errors.
        def filter(self, record: logging.LogRecord) -> bool:
            return "returned without completing response" not in record.getMessage()

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    logging.getLogger("uvicorn.error").addFilter(_DropShutdownNoise())
    await _Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve streamable HTTP on 127.0.0.1:PORT at /mcp")
    mode.add_argument("--stdio", action="store_true", help="serve over stdin/stdout")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.stdio:
        anyio.run(_run_stdio)
    else:
        anyio.run(_run_http, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
