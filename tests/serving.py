"""Starting a real `clipzero serve` process on 127.0.0.1 for the service tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    *extra: str, home: Path, env: dict[str, str] | None = None, key: str | None = None, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A server with the bundled model; waits until /healthz answers. ``cwd`` with ``PYTHONPATH`` in ``env`` runs
    another checkout's clipzero (the current directory would come first on the import path)."""
    port = free_port()
    environment = {**os.environ, "CLIPZERO_HOME": str(home), **(env or {})}
    home.mkdir(parents=True, exist_ok=True)
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server on its next write.
    log = open(home / f"serve-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "clipzero", "serve", "--port", str(port), "--model", "clipzero-shapes", *extra],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(home / f'serve-{port}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("server did not start within 120 s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def chromium() -> str | None:
    """Debian's chromium (installed by `make browser`), or None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


#: Skips a browser test where chromium is missing.
needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium package is not installed (make test installs it)"
)


@contextlib.contextmanager
def browser_page(**options: Any) -> Iterator[Any]:
    """A headless Chromium page, driven by Playwright with the system's chromium (never `playwright install`);
    ``options`` go to the page (``locale="zh-CN"``, ``viewport=...``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page(**options)
        finally:
            browser.close()


#: JavaScript: whether two different Chinese characters draw differently in the element's own font. Where no CJK font
#: is installed both come out as the same missing-glyph box ("tofu").
CJK_GLYPHS_DIFFER = """(element) => {
    const font = getComputedStyle(element).font;
    const draw = (text) => {
        const canvas = document.createElement("canvas");
        canvas.width = 64; canvas.height = 64;
        const context = canvas.getContext("2d");
        context.font = font.replace(/\\d+(\\.\\d+)?px/, "40px");
        context.fillText(text, 4, 48);
        return Array.from(context.getImageData(0, 0, 64, 64).data).join(",");
    };
    const ink = draw("猫").split(",").some((v) => v !== "0");
    return ink && draw("猫") !== draw("狗");
}"""
