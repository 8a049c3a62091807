"""``clipzero serve``: the web demo and the HTTP API on one port (``python app.py`` runs the same)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]

# flag -> (ServiceSettings field, type, help); the defaults shown are ServiceSettings' own, never repeated here.
_LIMITS = [
    ("--max-upload-mb", "max_upload_mb", float, "megabytes per request body, API and UI"),
    ("--max-images", "max_images", int, "images per request"),
    ("--max-labels", "max_labels", int, "labels per request"),
    ("--max-label-chars", "max_label_chars", int, "characters per label (and per search text)"),
    ("--max-pixels", "max_pixels", int, "pixels per image"),
    ("--max-request-pixels", "max_request_pixels", int, "decoded pixels per request, priced from the images' "
     "headers before any is decoded"),
    ("--max-zip-entries", "max_zip_entries", int, "entries per zip in batch tagging"),
    ("--max-unzip-mb", "max_unzip_mb", float, "uncompressed megabytes read from a request's zips"),
    ("--request-timeout", "request_timeout_s", float, "seconds a request may work before it gets 503; the UI's "
     "batch tag gets 10x"),
    ("--max-temp-mb", "max_temp_mb", float, "megabytes the server's upload folder may hold (uploads, result files); "
     "an upload past it gets 507"),
    ("--upload-keep", "upload_keep_s", float, "seconds uploads and result files are kept (at least 10x "
     "--request-timeout)"),
    ("--batch-size", "max_batch", int, "most images per micro-batch"),
    ("--batch-wait-ms", "batch_wait_ms", float, "micro-batch gathering time"),
]  # fmt: skip


def add_parsers(commands: Any) -> None:
    from ..service.core import ServiceSettings  # the dataclass alone: no web extra needed for --help

    defaults = ServiceSettings()
    serve = commands.add_parser(
        "serve",
        help="serve the web demo and the JSON HTTP API",
        description="Serve the Gradio web demo at / and the HTTP API at /v1 (OpenAPI at /docs) on one port, with "
        "the model loaded once. Offline and quiet: no analytics, no telemetry.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    options.add_model_options(serve)
    serve.add_argument("--head", metavar="PATH", help="a trained head (clipzero finetune probe|cache): requests "
                       "without labels are classified with it")  # fmt: skip
    serve.add_argument("--store", "-s", type=Path, metavar="DIR", help="embedding store for search (its model)")
    options.add_templates_option(serve)
    options.add_calibration_option(serve)
    serve.add_argument("--api-key", metavar="KEY", help="require this key on every route but /healthz: the API, the "
                       "web UI (login page at /login) and uploads (default $CLIPZERO_API_KEY)")  # fmt: skip
    for flag, field, kind, text in _LIMITS:
        serve.add_argument(
            flag, dest=field, type=kind, metavar="N", help=f"{text} (default {getattr(defaults, field):g})"
        )
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME", help="a Host name this "
                       "server answers to besides its address and localhost (repeatable; others get 421, against DNS "
                       "rebinding)")  # fmt: skip
    serve.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN", help="another site "
                       "(https://app.example) whose pages may call this server from a browser (repeatable)")
    serve.add_argument("--no-micro-batching", action="store_true", help="encode each image on its own")
    serve.add_argument("--no-ui", action="store_true", help="the HTTP API only")
    serve.add_argument("--llm-url", metavar="URL", help="OpenAI-compatible server for re-ranking (default "
                       "$CLIPZERO_LLM_URL, else the config file's llm_url)")  # fmt: skip
    serve.add_argument("--llm-model", metavar="NAME", help="its model name (default $CLIPZERO_LLM_MODEL, else the "
                       "config file's llm_model)")  # fmt: skip


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from ..extras import require
    from ..factory import resolve_templates

    require("web", "clipzero serve")
    options.at_least(args, 1, *(field for _, field, kind, _ in _LIMITS if kind is int))
    resolve_templates(args.templates)  # a wrong template set fails now, not after the model loads
    options.check_calibration(args)
    from ..listen import open_port, port_of

    sock = open_port(args.host, args.port)  # a taken port fails now, before torch is imported or the model loads
    options.check_model(args, args.store)
    from ..factory import resolve_api_key
    from ..service import ServiceSettings, serve

    limits = {field: getattr(args, field) for _, field, _, _ in _LIMITS if getattr(args, field) is not None}
    settings = ServiceSettings(
        model=args.model,
        precision=args.precision,
        device=args.device,
        adapter=args.adapter,
        head=args.head,
        store=args.store,
        api_key=resolve_api_key(args.api_key),
        micro_batching=not args.no_micro_batching,
        templates=args.templates,
        llm_url=args.llm_url,
        llm_model=args.llm_model,
        calibration=args.calibration,
        allowed_hosts=tuple(args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        **limits,
    )

    def ready(app: Any) -> None:
        sys.stderr.write(f"clipzero: serving on http://{_url_host(args.host)}:{port_of(sock)} (API at /v1, OpenAPI "
                         "at /docs)\n")  # fmt: skip
        sys.stderr.flush()

    serve(settings, host=args.host, port=port_of(sock), ui=not args.no_ui, on_ready=ready, sock=sock)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


COMMANDS = {"serve": cmd_serve}
