"""What a store holds and reports: search hits, records to store, stored images, add reports; canonical paths."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..pipeline import Embedded

__all__ = ["AddReport", "Record", "SearchHit", "StoredImage", "canonical_path"]


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        path: a path of the image (the first known, sorted).
        score: cosine similarity to the query, in [-1, 1] (inner product of unit vectors).
        sha256: the image content's hash.
        paths: every known path of this content.
    """

    path: str
    score: float
    sha256: str
    paths: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from ..video import parse_frame_name

        frame = parse_frame_name(self.path)  # a video frame: which video, and when
        where = {"video": frame[0], "time": frame[1]} if frame is not None else {}
        return {"path": self.path, "score": self.score, "sha256": self.sha256, **where}


@dataclass
class Record:
    """One path to store: its content hash, sizes, and the embedding when the content is new."""

    path: str
    sha256: str
    nbytes: int
    size: int
    mtime_ns: int
    vector: np.ndarray | None = None
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, item: Embedded) -> Record:
        """The record of a file the pipeline embedded (its path as given, hash, sizes and vector)."""
        return cls(item.name, item.sha256, item.nbytes, item.size, item.mtime_ns, item.vector)


@dataclass(frozen=True)
class StoredImage:
    id: int
    sha256: str
    paths: tuple[str, ...]
    vector: np.ndarray
    metadata: dict[str, Any] | None


@dataclass
class AddReport:
    """What an :meth:`EmbeddingStore.add` did: every input is counted in exactly one of these."""

    encoded: int = 0  # new content, embedded now
    reused: int = 0  # new path for content already stored (same bytes): not encoded again
    unchanged: int = 0  # path already stored with the same size and mtime: not even read
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def total(self) -> int:
        return self.encoded + self.reused + self.unchanged + len(self.failed)


def canonical_path(path: str) -> str:
    """Paths are stored absolute and normalised, so the same file is one key however it was named."""
    return os.path.abspath(os.path.expanduser(path))
