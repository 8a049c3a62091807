"""What clipzero trusts from a client, written once and used by every door that serves one (the HTTP API, the web
UI, the agent tools over MCP).

* **A client's string is never a server path**, except a path inside a folder the operator named (``clipzero
  mcp --root DIR``): :func:`inside_roots` resolves links and ``..`` first, and refuses anything else, devices and
  FIFOs included, before it is opened.
* **Template sets from a client** are a built-in name or inline ``{label}`` templates, never a file
  (:func:`client_templates`).
* **Work is bounded before it starts**: label count and length (:func:`check_labels`).
* **One key for every door**: ``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or the web UI's session
  cookie, an HMAC of the key (:func:`key_matches`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ClientPathRefused, LabelError, TemplateError

__all__ = [
    "SESSION_COOKIE",
    "ClientPathRefused",
    "check_labels",
    "client_templates",
    "inside_roots",
    "key_matches",
    "session_token",
]

#: The cookie the login page sets for the web UI.
SESSION_COOKIE = "clipzero_session"


def inside_roots(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]], *, kind: str = "file",
                 must_exist: bool = True) -> Path:  # fmt: skip
    """The resolved ``path`` when it lies inside one of ``roots``, or ClientPathRefused.

    Args:
        path: the path a client named.
        roots: the folders the operator allowed (none: every path is refused).
        kind: ``file`` (a regular file), ``folder``, or ``output`` (a file to write: it need not exist, its folder
            must, and a file already there must be a regular one).
        must_exist: for ``file`` and ``folder``, refuse a path that does not exist.

    Raises:
        ClientPathRefused: no roots, a path outside them (after resolving links and ``..``), or not of ``kind``.
            The message names the path as the client gave it and never shows a file's contents.
    """
    raw = os.fspath(path)
    if not raw or "\x00" in raw:
        raise ClientPathRefused("path refused: empty or malformed")
    if len(raw) > 4096:  # longer than any path the system accepts: a client's blob, never echoed whole
        raise ClientPathRefused(f"path {shown_text(raw)!r} refused: {len(raw):,} characters is not a path")
    if not roots:
        raise ClientPathRefused(
            f"path {raw!r} refused: this server reads no files (its operator gave no --root); send the image "
            "itself as a data URL (data:image/png;base64,...)"
        )
    resolved = Path(os.path.realpath(raw))
    for root in roots:
        base = Path(os.path.realpath(root))
        if resolved == base or base in resolved.parents:
            break
    else:
        raise ClientPathRefused(f"path {raw!r} refused: it is outside the folders this server may read "
                                f"({', '.join(os.fspath(r) for r in roots)})")  # fmt: skip
    try:
        mode: int | None = os.stat(resolved).st_mode
    except OSError:
        mode = None
    if kind == "output":
        if mode is not None and not stat.S_ISREG(mode):
            raise ClientPathRefused(f"path {raw!r} refused: not a regular file")
        if not resolved.parent.is_dir():
            raise ClientPathRefused(f"path {raw!r} refused: its folder does not exist")
        return resolved
    if mode is None:
        if must_exist:
            raise ClientPathRefused(f"path {raw!r} refused: no such {kind}")
        return resolved
    if kind == "folder" and not stat.S_ISDIR(mode):
        raise ClientPathRefused(f"path {raw!r} refused: not a folder")
    if kind == "file" and not stat.S_ISREG(mode):
        raise ClientPathRefused(f"path {raw!r} refused: not a regular file")
    return resolved


def shown_text(text: str, most: int = 120) -> str:
    """A client's string as it may appear in a message: whole when short, else its start and end."""
    return text if len(text) <= most else f"{text[: most - 40]}...{text[-30:]}"


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
    from .prompts import list_template_sets

    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        name = value.strip()
        if "{label}" not in name:
            if name in list_template_sets():
                return name
            shown = shown_text(name, 60)
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
