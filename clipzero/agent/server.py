"""``clipzero mcp``: the agent tools over the Model Context Protocol, on the official MCP Python SDK.

Tools and their schemas come from :mod:`clipzero.tools.specs`, the work from :class:`~clipzero.tools.toolbox.Toolbox`
(one model for every call). Arguments are checked against each tool's input schema before the tool runs; a tool
that fails answers with ``isError`` and a message that says why (a refused path, a bound exceeded, an unreadable
image), never with another file's contents. Tools run in worker threads, so a long ``tag_folder`` call reports
progress (MCP progress notifications) while other calls are served.

Transports: stdio (for desktop agents, the default) and streamable HTTP at ``/mcp``, where the same key rule as
``clipzero serve`` applies (:func:`clipzero.access.key_matches`).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
from jsonschema import Draft202012Validator
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from .. import __version__
from ..access import key_matches
from ..errors import ClipzeroError
from ..listen import open_port, run_on
from ..tools.specs import tool_specs
from ..tools.toolbox import Toolbox

__all__ = ["build_server", "run_http", "run_stdio", "unavailable_tools"]

log = logging.getLogger(__name__)

_INSTRUCTIONS = (
    "clipzero labels images with free-text labels, zero-shot, and searches stored images by text. Use "
    "classify_images to pick among your own labels (set threshold to allow 'none of these'), tag_folder for whole "
    "folders, search_images for the stores listed as resources, embed for raw vectors. Images are file paths "
    "inside the server's allowed folders or data URLs."
)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


#: What each JSON Schema rule asks, said without the value that broke it (a client's 26 MB argument must not come
#: back in the error, past the SDK client's message limit).
_RULES = {
    "type": "must be of type {}", "maxLength": "is longer than {} characters", "minLength": "is shorter than {} "
    "characters", "maxItems": "has more than {} items", "minItems": "has fewer than {} items", "maximum": "is over "
    "{}", "minimum": "is under {}", "enum": "must be one of {}", "pattern": "does not match {}", "const": "must be {}",
    "uniqueItems": "has repeated items", "additionalProperties": "has arguments the tool does not take",
    "required": "misses a required argument",
}  # fmt: skip


def _schema_problem(error: Any) -> str:
    """One schema violation: where, and which rule; never the offending value itself."""
    where = "/".join(str(p) for p in error.absolute_path) or "arguments"
    rule = _RULES.get(error.validator, "does not fit the tool's schema ({})")
    expected = error.validator_value
    shown = json.dumps(expected, ensure_ascii=False) if not isinstance(expected, (bool, dict)) else error.validator
    if error.validator in ("required", "additionalProperties") and len(error.message) <= 200:
        return f"{where}: {error.message}"  # names the argument, which the schema (not the client) spells
    return f"{where}: " + rule.format(shown[:80])


def unavailable_tools(toolbox: Toolbox) -> dict[str, str]:
    """The tools this server leaves out of its list, and why: a client's model never picks a tool that can only
    fail (search_images without a store, describe_labels without an LLM server)."""
    from ..factory import llm_configured

    absent = {}
    if not toolbox.stores:
        absent["search_images"] = "needs an embedding store: start clipzero mcp with --store DIR"
    why = llm_configured(toolbox.llm_url, toolbox.llm_model)
    if why is not None:
        absent["describe_labels"] = why
    return absent


def build_server(toolbox: Toolbox) -> Server[Any]:
    """The MCP server of ``toolbox``'s tools and resources."""
    absent = unavailable_tools(toolbox)
    specs = [spec for spec in tool_specs(toolbox.limits) if spec.name not in absent]
    listed = [
        types.Tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=spec.input_schema,
            output_schema=spec.output_schema,
            annotations=types.ToolAnnotations(title=spec.title, read_only_hint=spec.read_only,
                                              destructive_hint=False, open_world_hint=False),
        )
        for spec in specs
    ]
    validators = {spec.name: Draft202012Validator(spec.input_schema) for spec in specs}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name, arguments = params.name, dict(params.arguments or {})
        validator = validators.get(name)
        if name in absent:
            return _error(f"{name} is not offered by this server: it {absent[name]}")
        if validator is None:
            return _error(f"unknown tool {name!r}: the tools are {', '.join(validators)}")
        problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        if problems:
            return _error(f"{name}: invalid arguments: " + "; ".join(_schema_problem(e) for e in problems[:5]))

        def progress(done: int, total: int, message: str) -> None:  # called from the tool's worker thread
            anyio.from_thread.run(ctx.session.report_progress, float(done), float(total), message)

        try:
            result = await anyio.to_thread.run_sync(partial(toolbox.call, name, arguments, progress))
        except ClipzeroError as exc:
            return _error(str(exc))
        except Exception as exc:  # a bug, not the caller's fault: say so without a traceback on the wire
            log.exception("tool %s failed", name)
            return _error(f"{name} failed inside the server ({type(exc).__name__}); see the server's log")
        text = json.dumps(result, ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=result)

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(name=r["name"], uri=r["uri"], description=r["description"], mime_type="application/json")
                for r in toolbox.resources()
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            content = await anyio.to_thread.run_sync(toolbox.read_resource, uri)
        except ClipzeroError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from exc
        text = json.dumps(content, ensure_ascii=False, indent=2)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    return Server(
        "clipzero",
        version=__version__,
        title="clipzero: zero-shot image labels and search",
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


def run_stdio(toolbox: Toolbox) -> None:
    """Serve over stdin/stdout until the client closes them (stdout carries only the protocol meanwhile)."""
    from mcp.server.stdio import stdio_server

    server = build_server(toolbox)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class _KeyGate:
    """Every HTTP request needs the key (``Authorization: Bearer`` or ``X-API-Key``), as on ``clipzero serve``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not key_matches(self.api_key, headers, {}):
                body = json.dumps({"error": {"type": "Unauthorized", "message": "missing or wrong API key "
                                  "(X-API-Key, or Authorization: Bearer)"}}).encode()  # fmt: skip
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def run_http(
    toolbox: Toolbox,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str | None = None,
    max_body_mb: float = 64.0,
    on_ready: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until interrupted; ``on_ready`` is called just before
    requests are answered. ``sock``: a socket already listening (the CLI opens it before the model loads)."""
    sock = sock if sock is not None else open_port(host, port)
    server = build_server(toolbox)
    app: Any = server.streamable_http_app(host=host, max_request_body_size=int(max_body_mb * 1024 * 1024))
    if api_key:
        app = _KeyGate(app, api_key)
    if on_ready is not None:
        on_ready()  # the model is loaded by now; requests are answered next
    run_on(app, sock, lifespan="on")
