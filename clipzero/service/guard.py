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

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..access import SESSION_COOKIE, check_labels, client_templates, inside_roots, key_matches, session_token
from ..errors import ClientPathRefused

__all__ = [
    "SESSION_COOKIE",
    "ClientPathRefused",
    "check_labels",
    "client_templates",
    "file_arguments",
    "inside_roots",
    "key_matches",
    "session_token",
    "uploaded_file",
]


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
    try:
        return inside_roots(raw, [upload_root])  # the one path rule, with the upload folder as the only root
    except ClientPathRefused as exc:
        reason = str(exc)
        why = ("only files uploaded to this server are accepted" if "outside" in reason or "no files" in reason
               else "no such uploaded file" if "no such" in reason else reason.rpartition(": ")[2])  # fmt: skip
        raise ClientPathRefused(f"file argument {Path(raw).name!r} refused: {why}") from None


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
