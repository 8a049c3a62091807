"""Files a client uploaded to the web UI: read within limits, zip archives streamed entry by entry.

Nothing here writes to disk. A zip's entries are decompressed one at a time into memory, each at most the upload
limit and all of them together at most ``max_unzip_bytes``, however large the archive's headers claim they are;
an archive with more than ``max_entries`` entries is refused before any is read.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError, RequestError
from .guard import uploaded_file

__all__ = ["UploadItem", "UploadLimits", "expand_uploads", "read_upload"]


@dataclass(frozen=True)
class UploadLimits:
    """Bounds on what one UI request may read from its uploads."""

    max_file_bytes: int
    max_entries: int
    max_unzip_bytes: int


@dataclass(frozen=True)
class UploadItem:
    """One image from an upload: its name and bytes, or why it could not be read."""

    name: str
    data: bytes | None = None
    error: str | None = None


def read_upload(path: str, root: Path, max_bytes: int) -> tuple[str, bytes]:
    """The bytes of a file the client uploaded (see :func:`guard.uploaded_file`), at most ``max_bytes``.

    Raises:
        ClientPathRefused: not a file uploaded to this server.
        ImageError: larger than the limit.
    """
    resolved = uploaded_file(path, root)
    name = Path(path).name
    size = resolved.stat().st_size
    if size > max_bytes:
        raise ImageError(name, f"file of {size:,} bytes is over this server's limit of {max_bytes:,}")
    return name, resolved.read_bytes()


def _is_image_name(name: str) -> bool:
    from ..images import IMAGE_SUFFIXES

    return bool(name) and not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def expand_uploads(paths: list[str], root: Path, limits: UploadLimits) -> Iterator[UploadItem]:
    """Every image in the uploads, in order: plain files as they are, zip archives entry by entry.

    Raises:
        ClientPathRefused: a path that is not an upload of this server (checked for all paths first).
        RequestError: an archive with more entries than the limit.
    """
    checked = [uploaded_file(p, root) for p in paths]
    for raw, path in zip(paths, checked):
        if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            yield from _archive(path, Path(raw).name, limits)
            continue
        try:
            name, data = read_upload(raw, root, limits.max_file_bytes)
        except ImageError as exc:
            yield UploadItem(exc.source, error=exc.reason)
            continue
        yield UploadItem(name, data)


def _archive(path: Path, shown: str, limits: UploadLimits) -> Iterator[UploadItem]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield UploadItem(shown, error=f"not a readable zip archive ({exc})")
        return
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > limits.max_entries:
            raise RequestError(
                f"{shown} has {len(entries):,} entries, over this server's limit of {limits.max_entries:,} per "
                "request: split it into smaller archives"
            )
        total = 0
        for info in entries:
            name = f"{shown}/{info.filename}"
            if not _is_image_name(Path(info.filename).name):
                continue
            if total >= limits.max_unzip_bytes:
                yield UploadItem(name, error=f"not read: {shown} passed this server's limit of "
                                 f"{limits.max_unzip_bytes:,} uncompressed bytes per request")  # fmt: skip
                continue
            allowed = min(limits.max_file_bytes, limits.max_unzip_bytes - total)
            try:
                with archive.open(info) as stream:  # decompressed as read: the header's sizes are not trusted
                    data = stream.read(allowed + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
                yield UploadItem(name, error=f"cannot extract from the archive ({exc})")
                continue
            total += len(data)
            if len(data) > allowed:
                yield UploadItem(name, error=f"over {allowed:,} bytes uncompressed: not read")
                continue
            yield UploadItem(name, data)
