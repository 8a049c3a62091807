"""A small OpenAI-compatible chat server for tests: real HTTP on 127.0.0.1, replies scripted by the test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    """What the server does with one request: wait, then answer with a status and a body."""

    text: str = ""
    status: int = 200
    delay: float = 0.0
    raw: str | None = None  # a body sent as is instead of a chat completion


@dataclass
class LLMServer:
    url: str
    script: Callable[[dict[str, Any]], Reply] = field(default=lambda request: Reply('{"choice": 1}'))
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's HTTP headers, in order

    def user_text(self, index: int = -1) -> str:
        content = self.requests[index]["messages"][-1]["content"]
        return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            server.requests.append(body)
            server.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = server.script(body)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.raw is not None:
                payload = reply.raw.encode()
            else:
                completion = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}}],
                }
                payload = json.dumps(completion).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

    return Handler


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = LLMServer(url=f"http://127.0.0.1:{httpd.server_address[1]}/v1")
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()
