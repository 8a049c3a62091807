"""`clipzero serve`: the web demo and the HTTP API on one port."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "cmd_serve"]


def add_parser(commands: Any, add_model_options: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the web demo and the JSON HTTP API",
        description="Serve the Gradio web demo at / and the HTTP API at /v1 (OpenAPI at /docs) on one port, with "
        "the model loaded once. Offline and quiet: no analytics, no telemetry.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    add_model_options(serve)
    serve.add_argument("--head", metavar="PATH", help="a trained head (clipzero finetune probe|cache): requests "
                       "without labels are classified with it")  # fmt: skip
    serve.add_argument("--store", "-s", type=Path, metavar="DIR", help="embedding store for search (its model)")
    serve.add_argument("--templates", "-t", metavar="NAME", help="default template set for requests that name none "
                       "(default: $CLIPZERO_TEMPLATES, the config file, else ensemble-en)")  # fmt: skip
    serve.add_argument("--api-key", metavar="KEY", help="require this key on every route but /healthz: the API, the "
                       "web UI (login page at /login) and uploads (default $CLIPZERO_API_KEY)")  # fmt: skip
    serve.add_argument("--max-upload-mb", type=float, default=32.0, help="bytes per request body, API and UI "
                       "(default 32)")  # fmt: skip
    serve.add_argument("--max-images", type=int, default=64, help="images per request (default 64)")
    serve.add_argument("--max-labels", type=int, default=1000, help="labels per request (default 1000)")
    serve.add_argument("--max-label-chars", type=int, default=300, help="characters per label (default 300)")
    serve.add_argument("--max-pixels", type=int, default=64_000_000, help="pixels per image (default 64M)")
    serve.add_argument("--max-zip-entries", type=int, default=2000, help="entries per zip in batch tagging "
                       "(default 2000)")  # fmt: skip
    serve.add_argument("--max-unzip-mb", type=float, default=1024.0, help="uncompressed megabytes read from a "
                       "request's zips (default 1024)")  # fmt: skip
    serve.add_argument("--request-timeout", type=float, default=60.0, metavar="S", help="seconds a request may work "
                       "before it gets 503; the UI's batch tag gets 10x (default 60)")  # fmt: skip
    serve.add_argument("--batch-size", type=int, default=32, help="most images per micro-batch (default 32)")
    serve.add_argument("--batch-wait-ms", type=float, default=5.0, help="micro-batch gathering time (default 5)")
    serve.add_argument("--no-micro-batching", action="store_true", help="encode each image on its own")
    serve.add_argument("--no-ui", action="store_true", help="the HTTP API only")
    serve.add_argument("--llm-url", metavar="URL", help="OpenAI-compatible server for re-ranking")
    serve.add_argument("--llm-model", metavar="NAME", help="its model name")


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from .service.core import ServiceSettings, configured_api_key
    from .service.server import serve

    settings = ServiceSettings(
        model=args.model,
        precision=args.precision,
        device=args.device or "auto",
        adapter=args.adapter,
        head=args.head,
        store=args.store,
        api_key=configured_api_key(args.api_key),
        max_upload_mb=args.max_upload_mb,
        max_images=args.max_images,
        max_labels=args.max_labels,
        max_label_chars=args.max_label_chars,
        max_pixels=args.max_pixels,
        max_zip_entries=args.max_zip_entries,
        max_unzip_mb=args.max_unzip_mb,
        request_timeout_s=args.request_timeout,
        max_batch=args.batch_size,
        batch_wait_ms=args.batch_wait_ms,
        micro_batching=not args.no_micro_batching,
        templates=args.templates,
        llm_url=args.llm_url or os.environ.get("CLIPZERO_LLM_URL"),
        llm_model=args.llm_model or os.environ.get("CLIPZERO_LLM_MODEL"),
    )
    sys.stderr.write(f"clipzero: serving on http://{args.host}:{args.port} (API at /v1, OpenAPI at /docs)\n")
    serve(settings, host=args.host, port=args.port, ui=not args.no_ui)
    return 0
