"""One process, one port: the HTTP API at /v1 and /healthz, the Gradio UI at /, all behind one gate."""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import ConfigError
from ..listen import open_port, run_on
from .core import Service, ServiceSettings

__all__ = ["create_app", "serve"]


def quiet_environment() -> None:
    """No analytics, telemetry or update checks: the service talks to nothing outside."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("GRADIO_ALLOW_FLAGGING", "never")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Gradio switches matplotlib's backend around every UI call, on the event loop: with a backend named here,
    # that is free, instead of a backend search (about a second, stalling every client) on the first call.
    os.environ.setdefault("MPLBACKEND", "agg")


def _work_folder() -> Path:
    """This server's own temp folder (uploads and results), removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="clipzero-serve-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


#: Names every server answers to, whatever address it is bound to.
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(host: str, extra: tuple[str, ...] = ()) -> list[str] | None:
    """The Host names a server bound to ``host`` answers to: the address itself, localhost, and ``extra``.

    A server bound to every address (``0.0.0.0``, ``::``) cannot know the names it is reached by: it answers to any
    unless ``extra`` names them (``--allowed-host``).
    """
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = host == ""
    if wildcard:
        return [*_LOOPBACK_NAMES, *extra, socket.gethostname()] if extra else None
    return [host, *_LOOPBACK_NAMES, *extra]


def create_app(settings: ServiceSettings | None = None, *, ui: bool = True, host: str = "127.0.0.1") -> Any:
    """The service as one ASGI app: the FastAPI API with the Gradio UI mounted at ``/`` (``ui=False``: the API
    alone), wrapped in the :class:`~clipzero.service.middleware.ServiceGate` that every request passes.

    Args:
        host: the address the server is bound to (the Host names it answers to follow from it).
    """
    quiet_environment()
    from .api import create_api
    from .middleware import ServiceGate
    from .quota import UploadQuota

    settings = settings or ServiceSettings()
    if settings.max_temp_bytes < settings.max_upload_bytes:
        raise ConfigError(f"--max-temp-mb {settings.max_temp_mb:g} is smaller than one upload (--max-upload-mb "
                          f"{settings.max_upload_mb:g})")  # fmt: skip
    work = _work_folder()
    uploads = work / "uploads"
    uploads.mkdir()
    quota = UploadQuota(uploads, settings.max_temp_bytes, settings.keep_uploads_s)
    # Gradio keeps uploads (and the files it serves) in GRADIO_TEMP_DIR: this server's folder, nobody else's.
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    service = Service(settings, upload_root=uploads)
    service.quota = quota
    app = create_api(service)
    if ui:
        import gradio as gr

        from .ui import UI_CSS, build_ui

        blocks = build_ui(service)
        _import_matplotlib()
        app = gr.mount_gradio_app(
            app,
            blocks,
            path="/",
            footer_links=["api"],
            css=UI_CSS,
            ssr_mode=False,
            max_file_size=settings.max_upload_bytes,
            allowed_paths=[],
            blocked_paths=[],
        )
        # A mounted Blocks is never "launched", and Gradio skips its own check that file arguments were uploaded
        # by a client unless it is. The gate checks them first; this turns Gradio's check on as a second wall.
        blocks.has_launched = True
    quota.pin_existing()  # the UI's example pictures, copied in by Gradio as it built the page
    quota.start_sweeper()
    gate = ServiceGate(app, api_key=settings.api_key, max_upload_bytes=settings.max_upload_bytes, upload_root=uploads,
                       quota=quota, allowed_hosts=allowed_hosts(host, settings.allowed_hosts),
                       allowed_origins=settings.allowed_origins, max_strings=settings.max_body_strings)  # fmt: skip
    gate.work_folder = work  # type: ignore[attr-defined]
    return gate


def _import_matplotlib() -> None:
    """Gradio imports matplotlib (when installed) at the first UI call, on the event loop: done here instead."""
    try:
        import matplotlib

        matplotlib.get_backend()
    except ImportError:
        pass


def serve(
    settings: ServiceSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    ui: bool = True,
    on_ready: Callable[[Any], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Open the port, load the model, then run the service until interrupted.

    Args:
        on_ready: called with the service's app once the model has loaded, before requests are answered (the CLI
            prints the address there, so a model that cannot load never gets an address printed).
        sock: a socket already listening (:func:`clipzero.listen.open_port`); else ``host:port`` is opened first,
            so a taken port fails before the model loads.

    Raises:
        ConfigError: the port is taken or cannot be opened (before anything loads).
    """
    sock = sock if sock is not None else open_port(host, port)
    try:
        app = create_app(settings, ui=ui, host=host)
    except BaseException:
        sock.close()
        raise
    if on_ready is not None:
        on_ready(app)
    # uvicorn stops gracefully on SIGTERM and then raises the signal again with the handler it found: with Python's
    # default that kills the process before any cleanup. This handler turns it into SystemExit instead, so the
    # temp folder (uploads, other users' result files) is removed on SIGTERM as on Ctrl-C.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main else None
    try:
        run_on(app, sock, timeout_graceful_shutdown=3)
    finally:
        shutil.rmtree(app.work_folder, ignore_errors=True)
        if main:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)
