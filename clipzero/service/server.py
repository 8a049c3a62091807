"""One process, one port: the HTTP API at /v1 and /healthz, the Gradio UI at /."""

from __future__ import annotations

import os
from typing import Any

from .core import Service, ServiceSettings

__all__ = ["create_app", "serve"]


def quiet_environment() -> None:
    """No analytics, telemetry or update checks: the service talks to nothing outside."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_ALLOW_FLAGGING", "never")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def create_app(settings: ServiceSettings | None = None, *, ui: bool = True) -> Any:
    """The FastAPI app with the Gradio UI mounted at ``/`` (``ui=False``: the API alone)."""
    quiet_environment()
    from .api import create_api

    service = Service(settings or ServiceSettings())
    app = create_api(service)
    if ui:
        import gradio as gr

        from .ui import build_ui

        app = gr.mount_gradio_app(app, build_ui(service), path="/", footer_links=["api"], ssr_mode=False)
    return app


def serve(settings: ServiceSettings | None = None, host: str = "127.0.0.1", port: int = 7860, ui: bool = True) -> None:
    """Run the service until interrupted."""
    import uvicorn

    app = create_app(settings, ui=ui)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
