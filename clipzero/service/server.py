"""One process, one port: the HTTP API at /v1 and /healthz, the Gradio UI at /, all behind one gate."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core import Service, ServiceSettings

__all__ = ["create_app", "serve"]


def quiet_environment() -> None:
    """No analytics, telemetry or update checks: the service talks to nothing outside."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_ALLOW_FLAGGING", "never")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _work_folder() -> Path:
    """This server's own temp folder (uploads and results), removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="clipzero-serve-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def create_app(settings: ServiceSettings | None = None, *, ui: bool = True) -> Any:
    """The service as one ASGI app: the FastAPI API with the Gradio UI mounted at ``/`` (``ui=False``: the API
    alone), wrapped in the :class:`~clipzero.service.middleware.ServiceGate` that every request passes."""
    quiet_environment()
    from .api import create_api
    from .middleware import ServiceGate

    settings = settings or ServiceSettings()
    work = _work_folder()
    uploads = work / "uploads"
    uploads.mkdir()
    # Gradio keeps uploads (and the files it serves) in GRADIO_TEMP_DIR: this server's folder, nobody else's.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    service = Service(settings, upload_root=uploads)
    app = create_api(service)
    if ui:
        import gradio as gr

        from .ui import build_ui

        blocks = build_ui(service)
        app = gr.mount_gradio_app(
            app,
            blocks,
            path="/",
            footer_links=["api"],
            ssr_mode=False,
            max_file_size=settings.max_upload_bytes,
            allowed_paths=[],
            blocked_paths=[],
        )
        # A mounted Blocks is never "launched", and Gradio skips its own check that file arguments were uploaded
        # by a client unless it is. The gate checks them first; this turns Gradio's check on as a second wall.
        blocks.has_launched = True
    return ServiceGate(app, api_key=settings.api_key, max_upload_bytes=settings.max_upload_bytes, upload_root=uploads)


def serve(
    settings: ServiceSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    ui: bool = True,
    on_ready: Callable[[Any], None] | None = None,
) -> None:
    """Load the model, then run the service until interrupted.

    Args:
        on_ready: called with the service's app once the model has loaded, before the port opens (the CLI prints
            the address there, so a model that cannot load never gets an address printed).
    """
    import uvicorn

    app = create_app(settings, ui=ui)
    if on_ready is not None:
        on_ready(app)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
