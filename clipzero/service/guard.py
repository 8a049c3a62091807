"""What the service trusts from a client, written once and used by every door (the HTTP API and the web UI).

The rules:

* **A client's string is never a server path.** Files reach the server only as uploaded bytes. The web UI's file
  arguments are accepted only when they name a regular file inside this server's own upload folder (where Gradio
  puts what a client uploaded to this process); anything else, device files, FIFOs and links out of the folder
  included, is refused before it is opened.
* **Template sets from a client** are a built-in name or an inline list of ``{label}`` templates, never a file.
* **Search text is text**, even when it looks like a path.
* **Work is bounded before it starts**: label count and length, images per request, and (in the middleware)
  the bytes of every request body as they are read.
* **One key for every door**: ``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or the UI's session cookie
  that the login page sets (an HMAC of the key, never the key itself).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ClipzeroError, LabelError, TemplateError

__all__ = [
    "SESSION_COOKIE",
    "ClientPathRefused",
    "check_labels",
    "client_templates",
    "file_arguments",
    "key_matches",
    "session_token",
    "uploaded_file",
]

#: The cookie the login page sets for the web UI.
SESSION_COOKIE = "clipzero_session"


class ClientPathRefused(ClipzeroError):
    """A client named a server file that it did not upload to this server."""


def uploaded_file(path: str | os.PathLike[str], upload_root: str | os.PathLike[str]) -> Path:
    """The file a client uploaded, or ClientPathRefused.

    Args:
        path: the path the client's request names.
        upload_root: this server's upload folder.

    Returns:
        The resolved path, a regular file inside ``upload_root``.

    Raises:
        ClientPathRefused: the path is outside the upload folder (after resolving links and ``..``), or is not a
            regular file (a device, a FIFO, a socket, a folder), or does not exist. The message never shows the
            file's contents.
    """
    raw = os.fspath(path)
    if not raw or "\x00" in raw:
        raise ClientPathRefused("file argument refused: empty or malformed path")
    root = Path(os.path.realpath(upload_root))
    resolved = Path(os.path.realpath(raw))
    if resolved == root or root not in resolved.parents:
        raise ClientPathRefused(
            f"file argument {Path(raw).name!r} refused: only files uploaded to this server are accepted"
        )
    try:
        mode = os.stat(resolved).st_mode
    except OSError as exc:
        raise ClientPathRefused(f"file argument {Path(raw).name!r} refused: no such uploaded file") from exc
    if not stat.S_ISREG(mode):
        raise ClientPathRefused(f"file argument {Path(raw).name!r} refused: not a regular file")
    return resolved


def file_arguments(payload: Any) -> Iterator[Mapping[str, Any]]:
    """Every file reference in a Gradio request body: dicts with a ``path``, or marked as ``gradio.FileData``."""
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            meta = item.get("meta")
            if "path" in item or (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"):
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def client_templates(value: str | Sequence[str] | None) -> str | tuple[str, ...] | None:
    """A client's template choice: a built-in set name, or inline templates; never a path.

    Args:
        value: None (the server's default), a built-in name, a list of templates, or one string of templates
            separated by newlines (each with a ``{label}`` slot).

    Returns:
        The built-in name, the templates as a tuple, or None.

    Raises:
        TemplateError: neither a built-in name nor templates with ``{label}``.
    """
    from ..prompts import list_template_sets

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        name = value.strip()
        if "{label}" not in name:
            if name in list_template_sets():
                return name
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise TemplateError(
                f"unknown template set {shown!r}: use a built-in set ({', '.join(list_template_sets())}) or give "
                "templates with a {label} slot, one per line"
            )
        value = [line for line in name.splitlines() if line.strip()]
    templates = tuple(t.strip() for t in value if isinstance(t, str) and t.strip())
    if not templates or len(templates) != len(value):
        raise TemplateError("templates must be non-empty strings, each with a {label} slot")
    if len(templates) > 100:
        raise TemplateError(f"{len(templates)} templates, over this server's limit of 100")
    for template in templates:
        if len(template) > 300:
            raise TemplateError(f"a template of {len(template)} characters is over this server's limit of 300")
    return templates


def check_labels(labels: Sequence[str], *, max_labels: int, max_chars: int) -> None:
    """Refuse a label set over the server's limits, before any of it is encoded.

    Raises:
        LabelError: too many labels, or one longer than ``max_chars`` characters.
    """
    if len(labels) > max_labels:
        raise LabelError(f"{len(labels)} labels, over this server's limit of {max_labels}")
    for index, label in enumerate(labels):
        if len(label) > max_chars:
            raise LabelError(
                f"label {index + 1} ({label[:40]!r}...) has {len(label):,} characters, over this server's limit "
                f"of {max_chars}"
            )


def session_token(key: str) -> str:
    """The UI session cookie's value for ``key``: a keyed hash, so the cookie never holds the key itself."""
    return hmac.new(key.encode(), b"clipzero web UI session", hashlib.sha256).hexdigest()


def key_matches(key: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    """True when a request carries ``key``: ``Authorization: Bearer <key>``, ``X-API-Key``, or the session cookie."""
    expected = key.encode()
    given = headers.get("x-api-key")
    if given is not None:
        return hmac.compare_digest(given.encode(), expected)
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)
    cookie = cookies.get(SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), session_token(key).encode())
