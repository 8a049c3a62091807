"""The web UI's uploads: the paths Gradio hands a handler, and the line that counts them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .uitext import language_of, say

__all__ = ["count_note", "first_pictures", "thumbnails", "upload_paths"]

#: Uploads shown as thumbnails above the count (the list itself scrolls).
STRIP = 12

_PICTURES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


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


def first_pictures(files: Any, root: Path) -> list[str]:
    """The first few uploads that are pictures (by their names), for a strip of thumbnails; only files of this
    server's upload folder."""
    from ..errors import ClipzeroError
    from .guard import uploaded_file

    shown: list[str] = []
    for path in upload_paths(files):
        if len(shown) == STRIP:
            break
        if path.lower().endswith(_PICTURES):
            try:
                shown.append(str(uploaded_file(path, root)))
            except ClipzeroError:
                continue
    return shown


def thumbnails(files: Any, root: Path) -> Any:
    """The strip of the first uploads: shown while there are some."""
    import gradio as gr

    shown = first_pictures(files, root)
    return gr.Gallery(value=shown, visible=bool(shown))
