"""The door every request passes: the API key, the body-size limit, and the check on the UI's file arguments.

It wraps the whole ASGI app (the API and the mounted Gradio UI alike), so no route can be reached around it:

* with a key set, every path but ``/healthz`` and the login page needs it (:func:`guard.key_matches`); a browser
  asking for a page without it is sent to ``/login``, which sets the session cookie;
* every request body is counted as it is read, chunked or not, and a request over ``max_upload_bytes`` gets 413;
* a JSON body sent to the UI's Gradio API is read in full (within that limit) and every file argument in it must
  be a file uploaded to this server (:func:`guard.uploaded_file`), before Gradio sees it;
* ``/gradio_api/file=`` (and its old form ``/gradio_api/file/``) serves only files inside the upload folder.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from .guard import SESSION_COOKIE, ClientPathRefused, file_arguments, key_matches, session_token, uploaded_file

__all__ = ["ServiceGate"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Headers = Sequence[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_OPEN_PATHS = frozenset({"/healthz", "/login"})
#: Gradio's routes that serve a file named in the URL (the second is its deprecated spelling).
_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clipzero: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:12vh auto;padding:0 1rem;color:#222}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
button{{background:#2f6fde;color:#fff;border:0;border-radius:4px}}.error{{color:#b00020}}</style></head>
<body><h1>clipzero</h1><p>This server needs its API key.</p>{message}
<form method="post" action="/login"><label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button></form></body></html>
"""


class _TooLarge(Exception):
    pass


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies[name] = value
    return cookies


async def _respond(send: Send, status: int, body: bytes, content_type: str, extra: Headers) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, kind: str, message: str, extra: Headers = ()) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await _respond(send, status, body, "application/json", extra)


class ServiceGate:
    """ASGI middleware in front of the whole service.

    Args:
        app: the FastAPI app with the UI mounted.
        api_key: the key every door requires, or None for an open server.
        max_upload_bytes: the most bytes one request body may have.
        upload_root: the server's upload folder (Gradio's), the only place UI file arguments may point into.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_upload_bytes: int, upload_root: Path) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = max_upload_bytes
        self.upload_root = upload_root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = _headers(scope)
        if self.api_key and path == "/login" and scope["type"] == "http":
            await self._login(scope, receive, send)
            return
        if self.api_key and path not in _OPEN_PATHS and not key_matches(self.api_key, headers, _cookies(headers)):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if scope.get("method") == "GET" and "text/html" in headers.get("accept", ""):
                await _respond(send, 303, b"", "text/plain", [(b"location", b"/login")])
                return
            await _error(send, 401, "Unauthorized", "missing or wrong API key (X-API-Key, or Authorization: Bearer)")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await _error(send, 413, "PayloadTooLarge", self._too_large(int(length)))
            return
        served = next((path[len(p) :] for p in _FILE_ROUTES if path.startswith(p)), None)
        if served is not None:
            target = urllib.parse.unquote(served)
            try:
                uploaded_file(target, self.upload_root)
            except ClientPathRefused as exc:
                await _error(send, 403, "ClientPathRefused", str(exc))
                return
        has_body = scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        upload = headers.get("content-type", "").startswith("multipart/")
        if has_body and path.startswith("/gradio_api/") and not upload:
            # Any body but an upload may be read as JSON somewhere behind (with or without its content type).
            await self._checked_gradio_call(scope, receive, send)
            return
        await self._bounded(scope, receive, send)

    def _too_large(self, size: int | None = None) -> str:
        what = f"request of {size:,} bytes" if size is not None else "request body"
        return f"{what} is over this server's limit of {self.limit:,} bytes (--max-upload-mb)"

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, counting the body as it is read; over the limit, the client gets 413 whatever the app does."""
        state = {"read": 0, "over": False, "started": False}

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.limit:
                    state["over"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _error(send, 413, "PayloadTooLarge", self._too_large())
                return  # the app's own answer to a body it could not finish reading is replaced
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await _error(send, 413, "PayloadTooLarge", self._too_large())

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _checked_gradio_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._read_body(receive)
        if body is None:
            await _error(send, 413, "PayloadTooLarge", self._too_large())
            return
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None  # not JSON after all: Gradio answers it
        try:
            for item in file_arguments(payload):
                uploaded_file(str(item.get("path") or ""), self.upload_root)
        except ClientPathRefused as exc:
            await _error(send, 400, "ClientPathRefused", str(exc))
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.api_key is not None  # only called with a key set
        if scope.get("method") != "POST":
            page = _LOGIN_PAGE.format(message="").encode()
            await _respond(send, 200, page, "text/html; charset=utf-8", [])
            return
        body = await self._read_body(receive)
        form = urllib.parse.parse_qs((body or b"").decode("utf-8", "replace"))
        given = (form.get("key") or [""])[0]
        if key_matches(self.api_key, {"x-api-key": given}, {}):
            cookie = f"{SESSION_COOKIE}={session_token(self.api_key)}; Path=/; HttpOnly; SameSite=Strict"
            await _respond(send, 303, b"", "text/plain", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
            return
        message = f'<p class="error">{html.escape("Wrong key; try again.")}</p>'
        await _respond(send, 401, _LOGIN_PAGE.format(message=message).encode(), "text/html; charset=utf-8", [])
