"""The SQLite side of a store: its schema, turning SQLite's damage errors into StoreError, and reading vectors
back into a FAISS index (to catch up or rebuild it)."""

from __future__ import annotations

import fcntl
import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import StoreError
from .index_kinds import IndexSpec, auto_tune, build_index, index_ids, save_index

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "add_rows",
    "damaged_is_store_error",
    "fsync_dir",
    "index_agrees",
    "rebuild_index",
    "save_tuned",
    "tuned_search",
    "vector_rows",
    "writer_lock",
]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL UNIQUE,
    bytes INTEGER NOT NULL,
    added REAL NOT NULL,
    vector BLOB NOT NULL,
    metadata TEXT
);
CREATE TABLE IF NOT EXISTS paths (
    path TEXT PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_by_image ON paths(image_id);
"""


_F = TypeVar("_F", bound=Callable[..., Any])


def damaged_is_store_error(method: _F) -> _F:
    """SQLite's 'file is not a database' and 'malformed' errors become a StoreError that says what to do."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise damaged_store(Path(self.path) / "store.sqlite", str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def damaged_store(db: Path, why: str) -> StoreError:
    """The one message for a store database that cannot be used: what is wrong and what to do."""
    return StoreError(f"store database {db} is damaged or is not a clipzero store ({why}): rebuild the store by "
                      "adding the images again (clipzero index add), or restore the folder from a backup")


def index_agrees(db: sqlite3.Connection, index: Any, folder: Path) -> None:
    """Raise a StoreError unless the index holds exactly the ids of the stored images."""
    rows = sorted(int(r[0]) for r in db.execute("SELECT id FROM images"))
    held = sorted(index_ids(index).tolist())
    if rows != held:
        raise StoreError(f"store {folder}: the index holds {len(held)} vectors and SQLite {len(rows)} rows, "
                         "and they differ")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def vector_rows(db: sqlite3.Connection, dim: int, after_id: int = 0, batch: int = 50_000
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """(ids (n,), vectors (n, dim) float32) of the stored images after ``after_id``, in id order, in batches."""
    last = after_id
    while True:
        rows = db.execute("SELECT id, vector FROM images WHERE id > ? ORDER BY id LIMIT ?", (last, batch)).fetchall()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        last = int(ids[-1])
        yield ids, np.ascontiguousarray(vectors)


def add_rows(db: sqlite3.Connection, dim: int, index: Any, after_id: int) -> int:
    """Add the stored vectors after ``after_id`` to ``index``; returns the largest id added (or ``after_id``)."""
    max_id = after_id
    for ids, vectors in vector_rows(db, dim, after_id):
        index.add_with_ids(vectors, ids)
        max_id = int(ids[-1])
    return max_id


def rebuild_index(db: sqlite3.Connection, spec: IndexSpec, dim: int) -> tuple[Any, int]:
    """A new index of ``spec`` over every stored vector (trained on a sample first when the kind needs it)."""
    count = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    sample = None
    if spec.needs_training(count):
        sample = next(vector_rows(db, dim, 0, batch=min(count, 100_000)))[1]
    index = build_index(spec, dim, count, sample)
    return index, add_rows(db, dim, index, after_id=0)


def tuned_search(db: sqlite3.Connection, dim: int, index: Any, previous: dict[str, Any] | None,
                 queries: int = 100) -> dict[str, Any] | None:  # fmt: skip
    """Tune ``index``'s search setting for recall@10 (:func:`~.index_kinds.auto_tune`) when it is new or has grown or
    shrunk by a quarter since it was tuned (else keep the ``previous`` setting); returns the tuning record.

    The queries are stored vectors spread over the table, each moved to cosine about 0.55 from where it was (a
    query is rarely a stored image itself, and a text query sits farther from its images than an image does from
    its near copies), seeded so that the same store gives the same record.
    """
    count = int(index.ntotal)
    kind = IndexSpec("auto").describe(index)["kind"]
    if kind == "flat" or count == 0:
        return None  # exact search has nothing to tune: no probe queries are read
    setting = "ef_search" if kind == "hnsw" else "nprobe"
    if previous and previous["setting"] == setting and 0.8 * previous["vectors"] <= count <= 1.25 * previous["vectors"]:
        IndexSpec("auto").tune(index, **{setting: previous["value"]})
        return previous
    step = max(1, db.execute("SELECT MAX(id) FROM images").fetchone()[0] // queries)
    rows = db.execute("SELECT vector FROM images WHERE id % ? = 0 LIMIT ?", (step, queries)).fetchall()
    if not rows:
        return None
    vectors = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dim)
    noise = np.random.default_rng(0).standard_normal(vectors.shape).astype(np.float32) / np.sqrt(dim)
    moved = vectors + 1.5 * noise
    return auto_tune(index, moved / np.linalg.norm(moved, axis=1, keepdims=True))


def save_tuned(db: sqlite3.Connection, folder: Path, dim: int, index: Any, tuned: dict[str, Any] | None,
               state: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """Tune the index's search setting (:func:`tuned_search`), then save the index with its state and the tuning
    record, atomically; returns the record."""
    tuned = tuned_search(db, dim, index, tuned)
    save_index(folder, index, {**state, "tuned": tuned})
    fsync_dir(folder)
    return tuned


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """The store's exclusive writer lock (a lock file, across processes); taken at once or a StoreError."""
    lock = open(folder / ".lock", "a+")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StoreError(f"store {folder} is being written by another process; try again when it has finished"
                             ) from exc  # fmt: skip
        yield
    finally:
        lock.close()
