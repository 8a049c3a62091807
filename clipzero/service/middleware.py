"""The door every request passes: Host and Origin, the API key, body bounds, the upload quota, and the check on
the UI's file arguments.

It wraps the whole ASGI app (the API and the mounted Gradio UI alike), so no route can be reached around it:

* a request whose ``Host`` is not one this server answers to gets 421 (a page on another site that rebinds its
  name to 127.0.0.1 cannot read the server); a request from another site's page (its ``Origin``) that would change
  something gets 403, and no reply carries CORS headers for an origin that was not allowed;
* Gradio routes that write files the UI never needs (``process_recording``) are not served;
* with a key set, every path but ``/healthz`` and the login page needs it (:func:`guard.key_matches`); a browser
  asking for a page without it is sent to ``/login``, which sets the session cookie;
* every request body is counted as it is read, chunked or not, and a request over ``max_upload_bytes`` gets 413;
  an upload that would take the upload folder past its quota gets 507 (:class:`~.quota.UploadQuota`);
* every other body is read in full (within that limit) and screened before anything parses it (too many strings,
  too deeply nested: :func:`~.screen.screen_json`); a body sent to the UI's Gradio API must name as files only
  files uploaded to this server (:func:`guard.uploaded_file`);
* wrong keys at the login page are limited per client (429 after ten a minute);
* ``/gradio_api/file=`` (and its old form ``/gradio_api/file/``) serves only files inside the upload folder.
"""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Collection, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from .guard import SESSION_COOKIE, ClientPathRefused, file_arguments, key_matches, session_token, uploaded_file
from .quota import UploadQuota
from .screen import BodyRefused, screen_json

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
#: Gradio's routes the UI never asks for that write files, fetch other servers or change the app: not served.
_REFUSED_ROUTES = ("/gradio_api/process_recording", "/gradio_api/run-history", "/gradio_api/proxy=",
                   "/gradio_api/vibe-", "/gradio_api/undo-vibe-", "/gradio_api/dev/", "/monitoring")  # fmt: skip
_UPLOAD_ROUTE = "/gradio_api/upload"
#: Wrong keys a client may try at the login page per minute before it is told to wait.
LOGIN_TRIES_PER_MINUTE = 10
#: Bodies larger than this are screened and parsed in a worker thread, never on the event loop.
_INLINE_BYTES = 256 * 1024

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


def host_name(value: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, lower case, without the port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


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


async def _refuse(scope: Scope, send: Send, status: int, kind: str, message: str) -> None:
    """Turn a request away: a websocket is closed (policy violation), an HTTP request gets the JSON error."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
    else:
        await _error(send, status, kind, message)


class ServiceGate:
    """ASGI middleware in front of the whole service.

    Args:
        app: the FastAPI app with the UI mounted.
        api_key: the key every door requires, or None for an open server.
        max_upload_bytes: the most bytes one request body may have.
        upload_root: the server's upload folder (Gradio's), the only place UI file arguments may point into.
        quota: the upload folder's quota (None: unbounded).
        allowed_hosts: the host names this server answers to (None: any, for a server bound to every address).
        allowed_origins: other sites' origins (``https://app.example``) whose pages may call this server.
        max_strings: the most JSON strings one body may hold (:func:`~.screen.screen_json`).
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_upload_bytes: int, upload_root: Path,
                 quota: UploadQuota | None = None, allowed_hosts: Collection[str] | None = None,
                 allowed_origins: Collection[str] = (), max_strings: int = 50_000) -> None:  # fmt: skip
        self.app = app
        self.api_key = api_key
        self.limit = max_upload_bytes
        self.upload_root = upload_root
        self.quota = quota
        self.allowed_hosts = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.max_strings = max_strings
        self._login_failures: dict[str, deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = _headers(scope)
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            await _refuse(scope, send, 421, "MisdirectedRequest", "this server does not answer to that Host name; "
                          "start it with --allowed-host NAME to add one")  # fmt: skip
            return
        foreign = self._foreign_origin(headers)
        if foreign:
            send = _without_cors(send)  # another site's page: never told it may read the reply
            if scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
                await _refuse(scope, send, 403, "ForbiddenOrigin", "requests from another site's page are refused; "
                              "start the server with --allowed-origin ORIGIN to allow one")  # fmt: skip
                return
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
        if path.startswith(_REFUSED_ROUTES):
            await _error(send, 404, "NotFound", f"no such endpoint: {path}")
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
        if has_body and not upload:
            # Any body but an upload may be read as JSON somewhere behind (with or without its content type).
            await self._checked_body(scope, receive, send, gradio=path.startswith("/gradio_api/"))
            return
        if has_body and self.quota is not None and path.rstrip("/") == _UPLOAD_ROUTE:
            await self._upload(scope, receive, send, int(length) if length.isdigit() else None)
            return
        await self._bounded(scope, receive, send)

    def _foreign_origin(self, headers: dict[str, str]) -> bool:
        """True for a request sent by another site's page: an Origin that is neither this server nor allowed."""
        origin = headers.get("origin")
        if origin is None:
            return False  # not from a browser page (curl, SDKs), or a same-origin GET
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed_origins:
            return False
        netloc = urllib.parse.urlsplit(origin).netloc
        return not netloc or netloc != headers.get("host", "").strip().lower()

    async def _upload(self, scope: Scope, receive: Receive, send: Send, length: int | None) -> None:
        """An upload within the folder's quota: its declared size counted first, an undeclared one as it streams."""
        assert self.quota is not None
        size = await anyio.to_thread.run_sync(self.quota.reserve, length, self.limit)  # walks the folder: off the loop
        if size is None:
            await _error(send, 507, "InsufficientStorage", self._quota_full())
            return
        full = (507, "InsufficientStorage", self._quota_full())
        try:  # past ``size``: the quota's fault (507) when it is smaller than one request may be, else 413
            await self._bounded(scope, receive, send, limit=size, status=full if size < self.limit else None)
        finally:
            self.quota.release(size)

    def _quota_full(self) -> str:
        assert self.quota is not None
        return (f"this server's upload folder is full (quota {self.quota.limit:,} bytes, --max-temp-mb); uploads "
                f"are removed {self.quota.keep_s:g} s after they arrive: try again later or upload less")  # fmt: skip

    def _too_large(self, size: int | None = None) -> str:
        what = f"request of {size:,} bytes" if size is not None else "request body"
        return f"{what} is over this server's limit of {self.limit:,} bytes (--max-upload-mb)"

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int | None = None,
                       status: tuple[int, str, str] | None = None) -> None:  # fmt: skip
        """Run the app, counting the body as it is read; over the limit, the client gets 413 (or ``status``)
        whatever the app does."""
        limit = self.limit if limit is None else min(limit, self.limit)
        code, kind, words = status or (413, "PayloadTooLarge", self._too_large())
        state = {"read": 0, "over": False, "started": False}

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    state["over"] = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _error(send, code, kind, words)
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
            await _error(send, code, kind, words)

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

    async def _checked_body(self, scope: Scope, receive: Receive, send: Send, gradio: bool) -> None:
        """Read the body (within the limit), screen it before anything parses it, check a Gradio call's file
        arguments, then hand it on."""
        body = await self._read_body(receive)
        if body is None:
            await _error(send, 413, "PayloadTooLarge", self._too_large())
            return
        try:
            if len(body) > _INLINE_BYTES:  # large: screened (and parsed) off the event loop
                payload = await anyio.to_thread.run_sync(self._screened, body, gradio)
            else:
                payload = self._screened(body, gradio)
            for item in file_arguments(payload):
                uploaded_file(str(item.get("path") or ""), self.upload_root)
        except BodyRefused as exc:
            await _error(send, exc.status, exc.kind, exc.message)
            return
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

    def _screened(self, body: bytes, parse: bool) -> Any:
        """The body screened (:func:`~.screen.screen_json`), and for a Gradio call parsed (None: not JSON)."""
        screen_json(body, max_strings=self.max_strings)
        if not parse or not body:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None  # not JSON after all: Gradio answers it
        except RecursionError as exc:  # the screen bounds nesting; this is the parser's own wall behind it
            raise BodyRefused(400, "NestedTooDeep", "the request body nests too deeply") from exc

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.api_key is not None  # only called with a key set
        if scope.get("method") != "POST":
            page = _LOGIN_PAGE.format(message="").encode()
            await _respond(send, 200, page, "text/html; charset=utf-8", [])
            return
        client = (scope.get("client") or ("?", 0))[0]
        failures = self._login_failures.setdefault(client, deque())
        now = time.monotonic()
        while failures and now - failures[0] > 60:
            failures.popleft()
        if len(failures) >= LOGIN_TRIES_PER_MINUTE:
            wait = int(60 - (now - failures[0])) + 1
            await _error(send, 429, "TooManyAttempts", f"too many wrong keys from this address: wait {wait} s",
                         [(b"retry-after", str(wait).encode())])  # fmt: skip
            return
        body = await self._read_body(receive)
        form = urllib.parse.parse_qs((body or b"").decode("utf-8", "replace"))
        given = (form.get("key") or [""])[0]
        if key_matches(self.api_key, {"x-api-key": given}, {}):
            cookie = f"{SESSION_COOKIE}={session_token(self.api_key)}; Path=/; HttpOnly; SameSite=Strict"
            await _respond(send, 303, b"", "text/plain", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
            return
        failures.append(now)
        if len(self._login_failures) > 10_000:  # bounded memory: forget the quietest clients
            self._login_failures = {c: f for c, f in self._login_failures.items() if f and now - f[-1] < 60}
        message = f'<p class="error">{html.escape("Wrong key; try again.")}</p>'
        await _respond(send, 401, _LOGIN_PAGE.format(message=message).encode(), "text/html; charset=utf-8", [])


def _without_cors(send: Send) -> Send:
    """``send`` with every ``Access-Control-*`` response header dropped."""

    async def filtered(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [(k, v) for k, v in message.get("headers", [])
                                  if not k.lower().startswith(b"access-control-")]  # fmt: skip
        await send(message)

    return filtered
