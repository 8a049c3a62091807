"""The web UI's uploads: the paths Gradio hands a handler, and the line that counts them."""

from __future__ import annotations

import os
from typing import Any

from .uitext import language_of, say

__all__ = ["count_note", "upload_paths"]


def upload_paths(files: Any) -> list[str]:
    """The paths Gradio hands a handler for a File input (checked against the upload folder by the caller)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(f, "name", None) or getattr(f, "path", None) or f) for f in items]


def count_note(files: Any, choice: str | None = None) -> str:
    """How many files are in an upload box and their size: the box itself shows a few rows and scrolls."""
    from ..modelinfo import format_bytes

    paths = upload_paths(files)
    if not paths:
        return ""
    size = 0
    for path in paths:
        try:
            size += os.path.getsize(path)
        except OSError:
            continue
    return say("files_count", language_of(choice), n=len(paths), size=format_bytes(size))
