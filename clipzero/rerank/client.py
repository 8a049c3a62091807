"""A small client for OpenAI-compatible chat servers (LMDeploy, vLLM, Ollama, OpenAI), with a response cache.

Only ``POST {base_url}/chat/completions`` is used. Timeouts, connection errors, HTTP 429 and 5xx are retried
with exponential backoff; other 4xx are not (the request itself is wrong). Successful replies are cached on disk by
a hash of the base URL, model, messages (image included) and sampling settings, so a repeated run costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClipzeroError

__all__ = ["ChatClient", "ChatReply", "LLMError", "ResponseCache", "client_from_env"]

DEFAULT_TIMEOUT_S = 60.0


class LLMError(ClipzeroError):
    """The LLM server could not be reached, timed out, or answered with an error."""


@dataclass(frozen=True)
class ChatReply:
    text: str
    model: str
    cached: bool = False
    seconds: float = 0.0


class ResponseCache:
    """Chat replies by request hash, in SQLite (shared safely by threads and processes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT, model TEXT, at REAL)")
        self._db.commit()

    def get(self, key: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT text, model FROM replies WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, key: str, text: str, model: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)", (key, text, model, time.time()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def default_cache() -> ResponseCache:
    from ..config import home

    return ResponseCache(home() / "llm-cache.sqlite")


class ChatClient:
    """Chat completions from an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:23333/v1`` (LMDeploy), ``http://localhost:8000/v1`` (vLLM),
            ``http://localhost:11434/v1`` (Ollama), ``https://api.openai.com/v1``. A URL without ``/v1`` gets it.
        model: the served model name.
        api_key: sent as a Bearer token when given.
        timeout: seconds for one request.
        retries: further attempts after a timeout, a connection error, HTTP 429 or 5xx.
        backoff: seconds before the first retry; doubled each time.
        cache: a ResponseCache, True for the one under CLIPZERO_HOME, or None/False for none.
        temperature, max_tokens: sampling settings sent with every request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 2,
        backoff: float = 0.5,
        cache: ResponseCache | bool | None = True,
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> None:
        if not base_url or not model:
            raise LLMError("an LLM needs a base URL and a model name (--llm-url, --llm-model or CLIPZERO_LLM_*)")
        url = base_url.rstrip("/")
        self.base_url = url if url.endswith("/v1") or "/v1/" in url else url + "/v1"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.cache = default_cache() if cache is True else cache if isinstance(cache, ResponseCache) else None
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _key(self, messages: list[dict[str, Any]]) -> str:
        blob = json.dumps(
            [self.base_url, self.model, self.temperature, self.max_tokens, messages], sort_keys=True, ensure_ascii=False
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def chat(self, messages: list[dict[str, Any]]) -> ChatReply:
        """The assistant's reply text.

        Raises:
            LLMError: unreachable, timed out or an HTTP error after the retries; or a reply without text.
        """
        key = self._key(messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return ChatReply(hit[0], hit[1], cached=True)
        import httpx

        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        started = time.perf_counter()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
            except httpx.TimeoutException:
                problem = f"no reply from {url} within {self.timeout:g} s"
                continue
            except httpx.HTTPError as exc:
                problem = f"cannot reach {url}: {type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"{url} answered HTTP {response.status_code}: {response.text[:200]}"
                continue
            if response.status_code >= 400:
                raise LLMError(f"{url} refused the request: HTTP {response.status_code}: {response.text[:300]}")
            try:
                data = response.json()
                text = data["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMError(f"{url} sent a reply that is not a chat completion: {response.text[:200]!r}") from exc
            if isinstance(text, list):  # content parts
                text = "".join(part.get("text", "") for part in text if isinstance(part, dict))
            if not isinstance(text, str):
                raise LLMError(f"{url} sent a reply without text")
            served = str(data.get("model") or self.model)
            if self.cache is not None:
                self.cache.put(key, text, served)
            return ChatReply(text, served, seconds=time.perf_counter() - started)
        raise LLMError(f"{problem} (after {self.retries + 1} attempts)")


def client_from_env(
    base_url: str | None = None, model: str | None = None, api_key: str | None = None, **kwargs: Any
) -> ChatClient:
    """A client from arguments, else CLIPZERO_LLM_URL / CLIPZERO_LLM_MODEL / CLIPZERO_LLM_API_KEY (OPENAI_API_KEY)."""
    return ChatClient(
        base_url or os.environ.get("CLIPZERO_LLM_URL", ""),
        model or os.environ.get("CLIPZERO_LLM_MODEL", ""),
        api_key=api_key or os.environ.get("CLIPZERO_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
        **kwargs,
    )
