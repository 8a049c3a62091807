"""``clipzero mcp`` (the agent tools over MCP) and ``clipzero tools`` (the same tools as function-calling schemas)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError
from . import options

__all__ = ["COMMANDS", "add_parsers"]

# flag -> (ToolLimits field, type, help); the defaults shown are ToolLimits' own.
_LIMITS = [
    ("--max-images", "max_images", int, "images per call"),
    ("--max-labels", "max_labels", int, "labels per call"),
    ("--max-label-chars", "max_label_chars", int, "characters per label or text"),
    ("--max-texts", "max_texts", int, "texts per embed call"),
    ("--max-image-mb", "max_image_mb", float, "megabytes per image"),
    ("--max-pixels", "max_pixels", int, "pixels per image"),
]


def add_parsers(commands: Any) -> None:
    from ..tools.specs import ToolLimits  # the dataclass alone: no mcp extra needed for --help

    defaults = ToolLimits()
    mcp = commands.add_parser(
        "mcp",
        help="serve the agent tools over MCP (stdio, or streamable HTTP)",
        description="Serve clipzero's tools (classify_images, search_images, tag_folder, embed, describe_labels, "
        "list_models, list_template_sets) and resources (stores, template sets) to MCP clients, on stdio by "
        "default. The model is loaded once and shared by every call. Tools read and write files only under the "
        "--root folders; with none, images come as data URLs only.",
    )
    mcp.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="with --http: address to listen on (default 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8765, help="with --http: port (default 8765)")
    mcp.add_argument("--api-key", metavar="KEY", help="with --http: require this key (Authorization: Bearer, or "
                     "X-API-Key) on every request (default $CLIPZERO_API_KEY)")  # fmt: skip
    mcp.add_argument("--root", action="append", default=[], type=Path, metavar="DIR", help="a folder whose files "
                     "the tools may read, and write results into (repeatable; default: none)")  # fmt: skip
    mcp.add_argument("--store", "-s", action="append", default=[], type=Path, metavar="DIR", help="an embedding "
                     "store for search_images, named by its folder (repeatable; all of one model)")  # fmt: skip
    options.add_model_options(mcp)
    options.add_templates_option(mcp)
    options.add_calibration_option(mcp)
    mcp.add_argument("--llm-url", metavar="URL", help="OpenAI-compatible server for describe_labels (default "
                     "$CLIPZERO_LLM_URL, else the config file's llm_url)")  # fmt: skip
    mcp.add_argument("--llm-model", metavar="NAME", help="its model name (default $CLIPZERO_LLM_MODEL, else the "
                     "config file's llm_model)")  # fmt: skip
    for flag, field, kind, text in _LIMITS:
        shown = format(getattr(defaults, field), "g" if kind is float else ",")
        mcp.add_argument(flag, dest=field, type=kind, metavar="N", help=f"{text} (default {shown})")

    tools = commands.add_parser(
        "tools",
        help="print the agent tools as function-calling schemas",
        description="Print the definitions of clipzero's agent tools, the same ones `clipzero mcp` serves: as "
        "OpenAI function-calling tools (the tools= of the Chat Completions API) or as plain JSON Schema.",
    )
    tools.add_argument("--format", choices=["openai", "json-schema"], default="openai", help="default openai")


def _limits(args: argparse.Namespace) -> Any:
    from ..tools.specs import ToolLimits

    chosen = {f.name: getattr(args, f.name) for f in fields(ToolLimits) if getattr(args, f.name, None) is not None}
    for name, value in chosen.items():
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    return ToolLimits(**chosen)


def cmd_mcp(args: argparse.Namespace, out: TextIO) -> int:
    from ..extras import require
    from ..factory import resolve_api_key, resolve_templates

    require("mcp", "clipzero mcp")
    limits = _limits(args)
    for root in args.root:
        if not root.is_dir():
            raise ConfigError(f"--root {root} is not a folder")
    resolve_templates(args.templates)  # a wrong template set fails now, not after the model loads
    options.check_calibration(args)
    from ..listen import open_port, port_of

    sock = open_port(args.host, args.port) if args.http else None  # a taken port fails now, before the model loads
    options.check_model(args, args.store[0] if args.store else None)
    from ..agent.server import run_http, run_stdio
    from ..tools.toolbox import Toolbox

    toolbox = Toolbox(
        model=args.model, device=args.device, precision=args.precision, adapter=args.adapter,
        templates=args.templates, stores=args.store, roots=args.root, limits=limits, llm_url=args.llm_url,
        llm_model=args.llm_model, calibration=args.calibration,
    )  # fmt: skip
    roots = ", ".join(map(str, toolbox.roots)) or "none (data URLs only)"
    try:
        if not args.http:
            sys.stderr.write(f"clipzero: MCP on stdio, {options.describe_encoder(toolbox.encoder)}; roots: {roots}\n")
            run_stdio(toolbox)
            return 0

        api_key = resolve_api_key(args.api_key)
        if not api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
            sys.stderr.write(f"clipzero: warning: MCP on {args.host} without --api-key: anyone who can reach the port "
                             "can use the tools and read the --root folders\n")  # fmt: skip

        assert sock is not None
        port = port_of(sock)

        def ready() -> None:
            sys.stderr.write(f"clipzero: MCP on http://{args.host}:{port}/mcp, "
                             f"{options.describe_encoder(toolbox.encoder)}; roots: {roots}\n")  # fmt: skip
            sys.stderr.flush()

        run_http(toolbox, host=args.host, port=port, api_key=api_key, on_ready=ready, sock=sock)
        return 0
    finally:
        toolbox.close()


def cmd_tools(args: argparse.Namespace, out: TextIO) -> int:
    from ..tools.specs import json_schema_tools, openai_tools

    options.print_json(openai_tools() if args.format == "openai" else json_schema_tools(), out)
    return 0


COMMANDS = {"mcp": cmd_mcp, "tools": cmd_tools}
