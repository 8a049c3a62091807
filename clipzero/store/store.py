"""EmbeddingStore: image embeddings kept on disk, so each image is encoded once.

A store is a directory:

* ``store.sqlite``: the source of truth. One row per distinct image content (sha256 of the file's bytes) holding
  its embedding (float32 blob) and optional metadata; one row per path pointing at its content, with the file's
  size and mtime so that unchanged files are not even re-read. A ``meta`` table records the schema version, the
  model id, the embedding size, the index kind and a revision counter bumped by every change.
* ``index.faiss`` and ``index.json``: the FAISS index over the embeddings (ids are the content rows' ids) and the
  revision it reflects. Both are written atomically (temporary file, fsync, rename) after the SQLite commit.

Because SQLite commits first and the index follows, a process killed at any moment leaves a store whose SQLite
part is whole; on open, an index that lags behind is caught up from SQLite (or rebuilt), so every vector has its
row and every row its vector. Writers take an exclusive lock file; readers never block and see committed data.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StoreError
from ..video import source_file
from . import database
from .database import SCHEMA, SCHEMA_VERSION, add_rows, damaged_is_store_error, rebuild_index, save_tuned, writer_lock
from .index_kinds import IndexSpec, load_index, search_index
from .records import AddReport, Record, SearchHit, StoredImage, canonical_path

if TYPE_CHECKING:
    from ..encoder import Encoder
    from ..images import ImageSource
    from ..pipeline import Embedded

__all__ = ["EmbeddingStore"]


class EmbeddingStore:
    """Image embeddings in FAISS, keys and metadata in SQLite, keyed by content.

    Args:
        path: the store's directory (created if missing, when ``encoder`` is given).
        encoder: the model; required to create a store and to add or search by text or image. A store built
            with one model refuses another.
        index: ``auto`` (exact below 50,000 images, HNSW above), ``flat`` (exact), ``hnsw`` or ``ivf``.

    Raises:
        StoreError: wrong model, newer schema, damaged files.

    Example:
        >>> store = EmbeddingStore("photos.store", load_model("clipzero-shapes"))
        >>> store.add(["a.png", "b.png"]).encoded
        2
        >>> store.search("a red circle", top_k=1)[0].path
        'a.png'
    """

    @damaged_is_store_error
    def __init__(self, path: str | os.PathLike[str], encoder: Encoder | None = None, *, index: str = "auto") -> None:
        self.path = Path(path)
        self.encoder = encoder
        db_path = self.path / "store.sqlite"
        existed = db_path.exists()
        if not existed:
            if encoder is None:
                raise StoreError(f"no store at {self.path}: create it by adding images with a model")
            self.path.mkdir(parents=True, exist_ok=True)
        elif db_path.stat().st_size == 0:  # SQLite would take it for a new, empty database
            raise sqlite3.DatabaseError("the file is empty")  # -> the damaged-store StoreError (decorator)
        self._lock = threading.RLock()  # one connection, used by decode threads (vector_of) and the writer
        self._db = sqlite3.connect(db_path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)  # idempotent (IF NOT EXISTS)
        with self._transaction():
            meta = self._meta()
            if not meta and (existed or encoder is None):
                raise sqlite3.DatabaseError("it holds no store metadata")
            if not meta:
                assert encoder is not None  # a new store: checked above
                self._set_meta(schema_version=SCHEMA_VERSION, model_id=encoder.id, model_spec=encoder.spec,
                               dim=encoder.embed_dim, index_kind=IndexSpec.parse(index).kind, revision=0,
                               removed_revision=0)  # fmt: skip
                meta = self._meta()
        version = int(meta.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {version}, newer than this clipzero "
                f"understands ({SCHEMA_VERSION}): upgrade clipzero"
            )
        self.model_id = meta["model_id"]
        self.model_spec = meta.get("model_spec", self.model_id)
        self.dim = int(meta["dim"])
        self.index_spec = IndexSpec.parse(meta["index_kind"])
        if encoder is not None and encoder.id != self.model_id:
            raise StoreError(
                f"store {self.path} holds embeddings of model {self.model_id!r}, not {encoder.id!r}: "
                "use that model, or another store for this one"
            )
        self._index, self._index_revision, self._index_max_id = self._open_index()

    # -- SQLite helpers ------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, str]:
        try:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:
            return {}

    def _set_meta(self, **values: object) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()]
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def writer(self) -> AbstractContextManager[None]:
        """One writer at a time, across processes: a second one gets a clear error instead of waiting."""
        return writer_lock(self.path)

    # -- the index -------------------------------------------------------------------------------------------------
    def _open_index(self) -> tuple[Any, int, int]:
        meta = self._meta()
        revision, removed = int(meta["revision"]), int(meta["removed_revision"])
        index, state = load_index(self.path)
        self._tuned = state.get("tuned")  # the search setting tuned for recall@10, and what it measured
        if index is not None and state["revision"] == revision:
            return index, revision, int(state["max_id"])
        if index is not None and state["revision"] >= removed and state["revision"] < revision:
            # Only additions since the index was saved (a writer was killed, or is still adding): catch up.
            max_id = add_rows(self._db, self.dim, index, after_id=int(state["max_id"]))
            return index, revision, max_id
        return self._rebuild_index(revision)

    def _rebuild_index(self, revision: int) -> tuple[Any, int, int]:
        index, max_id = rebuild_index(self._db, self.index_spec, self.dim)
        return index, revision, max_id

    def save(self) -> None:
        """Save the index, its search setting tuned for recall@10 (``add`` and ``remove`` save by themselves)."""
        self._tuned = save_tuned(self._db, self.path, self.dim, self._index, self._tuned,
                                 {"revision": self._index_revision, "max_id": self._index_max_id})  # fmt: skip

    def _refresh(self) -> None:
        """Bring this handle's index up to date with what other processes committed."""
        if int(self._meta()["revision"]) != self._index_revision:
            self._index, self._index_revision, self._index_max_id = self._open_index()

    # -- reading ---------------------------------------------------------------------------------------------------
    @damaged_is_store_error
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def _paths_of(self, image_id: int) -> tuple[str, ...]:
        return tuple(
            r[0] for r in self._db.execute("SELECT path FROM paths WHERE image_id = ? ORDER BY path", (image_id,))
        )

    @damaged_is_store_error
    def get(self, key: str | os.PathLike[str]) -> StoredImage | None:
        """The stored image for a path or a sha256, or None."""
        text = os.fspath(key)
        row = self._db.execute(
            "SELECT i.id, i.sha256, i.vector, i.metadata FROM images i JOIN paths p "
            "ON p.image_id = i.id WHERE p.path = ?",
            (canonical_path(text),),
        ).fetchone()
        if row is None:
            row = self._db.execute(
                "SELECT id, sha256, vector, metadata FROM images WHERE sha256 = ?", (text,)
            ).fetchone()
        if row is None:
            return None
        vector = np.frombuffer(row[2], dtype=np.float32).copy()
        return StoredImage(row[0], row[1], self._paths_of(row[0]), vector, json.loads(row[3]) if row[3] else None)

    @damaged_is_store_error
    def vectors(self) -> tuple[np.ndarray, np.ndarray, dict[int, list[str]], list[str]]:
        """Every stored content at once: ids (n,), L2-normalised vectors (n, dim), each id's paths (sorted) and the
        sha256 of each row."""
        batches = list(database.vector_rows(self._db, self.dim)) or [(np.zeros(0, "i8"), np.zeros((0, self.dim), "f4"))]
        paths: dict[int, list[str]] = {}
        for path, image_id in self._db.execute("SELECT path, image_id FROM paths ORDER BY path"):
            paths.setdefault(int(image_id), []).append(path)
        shas = [r[0] for r in self._db.execute("SELECT sha256 FROM images ORDER BY id")]
        return np.concatenate([i for i, _ in batches]), np.concatenate([v for _, v in batches]), paths, shas

    @damaged_is_store_error
    def search(
        self,
        query: str | ImageSource | np.ndarray,
        top_k: int = 10,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        exact: bool = False,
    ) -> list[SearchHit]:
        """The stored images closest to a query.

        Args:
            query: a text (a ``str``, embedded with the store's model), an image (a ``Path``, bytes or a PIL image),
                or a vector.
            top_k: how many results.
            nprobe, ef_search: search-time settings of the approximate kinds (default: tuned for recall@10 >= 0.95).
            exact: search every vector (a brute-force check on the approximate kinds).

        Returns:
            Hits, best first, with cosine similarity scores.
        """
        self._refresh()
        vector = self._query_vector(query)
        if self._index.ntotal == 0:
            return []
        self.index_spec.tune(self._index, nprobe=nprobe, ef_search=ef_search)
        scores, ids = search_index(self._index, vector.reshape(1, -1), min(top_k, self._index.ntotal), exact=exact)
        hits = []
        for score, image_id in zip(scores[0], ids[0]):
            if image_id < 0:
                continue
            sha = self._db.execute("SELECT sha256 FROM images WHERE id = ?", (int(image_id),)).fetchone()
            paths = self._paths_of(int(image_id))
            if sha is not None:
                hits.append(SearchHit(paths[0] if paths else "", float(score), sha[0], paths))
        return hits

    def _query_vector(self, query: str | ImageSource | np.ndarray) -> np.ndarray:
        if isinstance(query, np.ndarray):
            vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        else:
            if self.encoder is None:
                raise StoreError("searching by text or image needs the store's model: open the store with it")
            if isinstance(query, str):  # a str is always text; an image is a Path, bytes or a PIL image
                vector = self.encoder.encode_texts([query])[0]
            else:
                vector = self.encoder.encode_images([query])[0]
        if vector.shape != (self.dim,):
            raise StoreError(f"query vector has shape {vector.shape}, the store holds {self.dim}-d embeddings")
        return vector

    # -- writing ---------------------------------------------------------------------------------------------------
    @damaged_is_store_error
    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        metadata: dict[str, Any] | None = None,
        batch_size: int = 32,
        workers: int | None = None,
        progress: Any = None,
        engine: Any = "local",
        ray: Any = None,
        shard_rows: int = 1000,
        **video: Any,
    ) -> AddReport:
        """Embed and store images; unchanged files and known content are not encoded again.

        Images go through :func:`clipzero.pipeline.embed` (engine ``local``), which reads and hashes each file once,
        takes the vector of content this store holds (or met earlier in the run) instead of encoding it, and
        decodes in threads; or through another engine plugged in (:class:`clipzero.pipeline.Engine`): engine
        ``ray`` with ``ray`` a :class:`~clipzero.ray_engine.RayOptions`, or the engine object itself. Another
        engine's new vectors are also written as Parquet shards in ``<store>/shards/``.

        Args:
            paths: image files.
            metadata: optional JSON-serialisable data stored with newly encoded images.
            batch_size: images per forward pass and per commit.
            workers: decode threads (default: one per core, at least 2).
            progress: an optional callable receiving the number of inputs handled after each batch.
            engine: ``local``, ``ray``, or an :class:`~clipzero.pipeline.Engine`.
            ray: Ray options (engine ``ray``).
            shard_rows: engine ``ray``: rows per shard and per commit.
            video: ``every`` and ``scenes``: how videos are sampled (frames stored as ``<video>#t=<seconds>``).

        Returns:
            An :class:`AddReport`; unreadable files are listed in ``failed`` with the reason, never raised.
        """
        from .ingest import add_images

        if self.encoder is None:
            raise StoreError("adding images needs the store's model: open the store with it")
        with self.writer():
            self._refresh()
            report = add_images(self, paths, metadata=metadata, batch_size=batch_size, workers=workers,
                                progress=progress, engine=engine, ray=ray, shard_rows=shard_rows, **video)  # fmt: skip
            self.save()
        return report

    def is_unchanged(self, path: str, stat: os.stat_result) -> bool:
        """True when ``path`` is stored with this size and mtime (its content is then assumed the same)."""
        row = self._db.execute("SELECT size, mtime_ns FROM paths WHERE path = ?", (path,)).fetchone()
        return row is not None and (row[0], row[1]) == (stat.st_size, stat.st_mtime_ns)

    def knows(self, sha256: str) -> bool:
        """True when content with this hash is stored."""
        return self._db.execute("SELECT 1 FROM images WHERE sha256 = ?", (sha256,)).fetchone() is not None

    @damaged_is_store_error
    def vector_of(self, sha256: str) -> np.ndarray | None:
        """The stored embedding of content with this hash, or None (the pipeline's known-vector lookup)."""
        with self._lock:
            row = self._db.execute("SELECT vector FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def keep(self, items: Sequence[Embedded]) -> None:
        """Store what the pipeline embedded (vectors of paths; content already stored just gains the path)."""
        records = [Record.of(i) for i in items if i.vector is not None and i.sha256 and i.mtime_ns]
        if records:
            with self.writer():
                self.put(records)

    @damaged_is_store_error
    def put(self, records: Sequence[Record], *, metadata: dict[str, Any] | None = None) -> None:
        """Store paths and embeddings in one transaction, then update the index.

        A record with a ``vector`` adds new content (unless its hash is already stored); one without links its
        path to content already stored or added in the same call. Paths are stored canonical (absolute). The
        caller holds :meth:`writer` (as :meth:`add` does).
        """
        if not records:
            return
        now = time.time()
        blob = json.dumps(metadata) if metadata else None
        added: list[tuple[int, np.ndarray]] = []
        with self._transaction():
            for record in records:
                if record.vector is not None and not self.knows(record.sha256):
                    vector = np.ascontiguousarray(record.vector, np.float32).tobytes()
                    cursor = self._db.execute("INSERT INTO images(sha256, bytes, added, vector, metadata) VALUES "
                                              "(?, ?, ?, ?, ?)", (record.sha256, record.nbytes, now, vector, blob))
                    added.append((int(cursor.lastrowid or 0), record.vector))
            self._db.executemany(
                "INSERT OR REPLACE INTO paths(path, image_id, size, mtime_ns) "
                "SELECT ?, id, ?, ? FROM images WHERE sha256 = ?",
                [(canonical_path(r.path), r.size, r.mtime_ns, r.sha256) for r in records],
            )
            orphans = self._db.execute("SELECT COUNT(*) FROM images WHERE id NOT IN (SELECT image_id FROM paths)")
            if orphans.fetchone()[0]:  # a changed file: its old content is no longer anyone's
                self._drop_orphans()
                revision = int(self._meta()["revision"])
            else:
                revision = int(self._meta()["revision"]) + 1
                self._set_meta(revision=revision)
        if int(self._meta()["removed_revision"]) == revision:
            self._index, self._index_revision, self._index_max_id = self._rebuild_index(revision)
            return
        if added:
            ids = np.asarray([i for i, _ in added], dtype=np.int64)
            self._index.add_with_ids(np.ascontiguousarray(np.stack([v for _, v in added]), np.float32), ids)
            self._index_max_id = max(self._index_max_id, int(ids.max()))
        self._index_revision = revision
        if self.index_spec.wants_rebuild(self._index, len(self)):
            self._index, self._index_revision, self._index_max_id = self._rebuild_index(revision)  # outgrew it

    @damaged_is_store_error
    def remove(self, keys: Iterable[str | os.PathLike[str]]) -> int:
        """Forget paths (or sha256 keys); content no path points to any more is dropped. Returns paths removed."""
        removed = 0
        with self.writer(), self._transaction():
            for key in keys:
                text = os.fspath(key)
                cursor = self._db.execute(
                    "DELETE FROM paths WHERE path = ? OR image_id IN (SELECT id FROM images WHERE sha256 = ?)",
                    (canonical_path(text), text),
                )
                removed += cursor.rowcount
            self._drop_orphans()
        self._index, self._index_revision, self._index_max_id = self._open_index()
        self.save()
        return removed

    @damaged_is_store_error
    def prune(self) -> int:
        """Forget paths whose files no longer exist. Returns how many were pruned."""
        gone = [p for (p,) in self._db.execute("SELECT path FROM paths") if not os.path.exists(source_file(p))]
        return self.remove(gone) if gone else 0

    def _drop_orphans(self) -> None:
        self._db.execute("DELETE FROM images WHERE id NOT IN (SELECT image_id FROM paths)")
        revision = int(self._meta()["revision"]) + 1
        self._set_meta(revision=revision, removed_revision=revision)

    @damaged_is_store_error
    def info(self) -> dict[str, Any]:
        """Counts, model, index kind and sizes on disk."""
        files = {p.name: p.stat().st_size for p in self.path.iterdir() if p.is_file()}
        return {
            "path": str(self.path),
            "model": self.model_id,
            "dim": self.dim,
            "images": len(self),
            "paths": self._db.execute("SELECT COUNT(*) FROM paths").fetchone()[0],
            "index": {**self.index_spec.describe(self._index), **({"tuned": self._tuned} if self._tuned else {})},
            "schema_version": SCHEMA_VERSION,
            "bytes_on_disk": sum(files.values()),
        }

    @damaged_is_store_error
    def check(self) -> None:
        """Verify that the index and SQLite agree: every vector has its row and every row its vector, once.

        Raises:
            StoreError: they disagree (never expected; reopening the store rebuilds the index).
        """
        self._refresh()
        database.index_agrees(self._db, self._index, self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
