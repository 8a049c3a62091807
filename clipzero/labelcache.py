"""Label caches: label embeddings kept in this process and under CLIPZERO_HOME, so text is encoded once per machine.

Keys are (model id, template-set content hash, normalised label); values are the label's class embedding
(float32, unit length). A second process classifying with the same labels, model and templates encodes no text.

Both caches are bounded and evict the least recently used labels: the in-process one holds at most
``MEMORY_ENTRIES`` vectors, the persistent one ``label_cache_entries`` (config key; env
``CLIPZERO_LABEL_CACHE_ENTRIES``; default 100,000, about 200 MB at 512 dimensions). A server that sees a new label
set on every request therefore never grows without end. SQLite in WAL mode makes concurrent readers and writers
safe; a cache that cannot be written (read-only home) is skipped with a warning, never an error.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .config import home
from .errors import ClipzeroWarning

__all__ = ["MEMORY_ENTRIES", "LabelCache", "MemoryLabelCache", "default_label_cache", "memory_label_cache"]

Key = tuple[str, str, str]

#: The most label vectors one process keeps in memory.
MEMORY_ENTRIES = 50_000


class MemoryLabelCache:
    """The in-process label cache: a thread-safe LRU mapping of keys to vectors."""

    def __init__(self, max_entries: int = MEMORY_ENTRIES) -> None:
        self.max_entries = max(1, max_entries)
        self._items: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(key)
            if vector is not None:
                self._items.move_to_end(key)
            return vector

    def get_many(self, keys: Iterable[Key]) -> dict[Key, np.ndarray]:
        found = {}
        for key in keys:
            vector = self.get(key)
            if vector is not None:
                found[key] = vector
        return found

    def put_many(self, items: dict[Key, np.ndarray]) -> None:
        with self._lock:
            for key, vector in items.items():
                self._items[key] = vector
                self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class LabelCache:
    """A SQLite table of label embeddings, at most ``max_entries`` rows (least recently used go first).

    Args:
        path: the database file (default: ``$CLIPZERO_HOME/cache/labels.sqlite``).
        max_entries: the row limit (default: the ``label_cache_entries`` setting).
    """

    def __init__(self, path: str | Path | None = None, max_entries: int | None = None) -> None:
        if max_entries is None:
            from .config import load_settings

            max_entries = load_settings().label_cache_entries
        self.path = Path(path) if path is not None else home() / "cache" / "labels.sqlite"
        self.max_entries = max(1, max_entries)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                return self._open()
            except sqlite3.Error as exc:
                if not _damaged(exc) or not self._set_aside(exc):
                    raise
                return self._open()  # a fresh cache where the damaged one was
        return self._db

    def _set_aside(self, exc: Exception) -> bool:
        """Move a damaged cache file aside (``labels.sqlite.damaged-<time>``) so that a new one is built; False when
        it cannot be moved."""
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError:
            return False
        warnings.warn(f"label cache {self.path} was damaged ({exc}): moved aside to {aside.name}; a new cache is "
                      "built as labels are encoded", ClipzeroWarning, stacklevel=4)  # fmt: skip
        return True

    def _open(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS labels (model TEXT NOT NULL, templates TEXT NOT NULL, "
                    "label TEXT NOT NULL, vector BLOB NOT NULL, used INTEGER NOT NULL DEFAULT 0, "
                    "PRIMARY KEY (model, templates, label))"
                )
                columns = {row[1] for row in db.execute("PRAGMA table_info(labels)")}
                if "used" not in columns:  # a cache written before eviction existed
                    db.execute("ALTER TABLE labels ADD COLUMN used INTEGER NOT NULL DEFAULT 0")
                db.execute("CREATE INDEX IF NOT EXISTS labels_by_use ON labels(used)")
                db.commit()
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                if isinstance(exc, sqlite3.Error) and _damaged(exc) and self.path.exists():
                    raise  # moved aside by _connect, then opened afresh
                self._broken = True
                warnings.warn(
                    f"label cache {self.path} cannot be used ({exc}); labels are encoded each run",
                    ClipzeroWarning,
                    stacklevel=3,
                )
        return self._db

    def get_many(self, keys: Iterable[Key]) -> dict[Key, np.ndarray]:
        """The cached vectors for those keys that are present (and marks them as just used)."""
        keys = list(keys)
        with self._lock:
            db = self._connect()
            if db is None or not keys:
                return {}
            found: dict[Key, np.ndarray] = {}
            try:
                for key in keys:
                    row = db.execute(
                        "SELECT vector FROM labels WHERE model = ? AND templates = ? AND label = ?", key
                    ).fetchone()
                    if row is not None:
                        found[key] = np.frombuffer(row[0], dtype=np.float32).copy()
                if found:
                    now = time.time_ns()
                    with db:
                        db.executemany(
                            "UPDATE labels SET used = ? WHERE model = ? AND templates = ? AND label = ?",
                            [(now, *key) for key in found],
                        )
            except sqlite3.Error as exc:
                if not (_damaged(exc) and self._set_aside(exc)):
                    warnings.warn(f"label cache {self.path} could not be read ({exc})", ClipzeroWarning, stacklevel=3)
            return found

    def put_many(self, items: dict[Key, np.ndarray]) -> None:
        """Store vectors (existing keys are kept: the same key always means the same vector), then evict the least
        recently used rows over the limit."""
        with self._lock:
            db = self._connect()
            if db is None or not items:
                return
            now = time.time_ns()
            try:
                with db:
                    db.executemany(
                        "INSERT OR IGNORE INTO labels(model, templates, label, vector, used) VALUES (?, ?, ?, ?, ?)",
                        [(*key, np.ascontiguousarray(v, np.float32).tobytes(), now) for key, v in items.items()],
                    )
                    count = int(db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
                    if count > self.max_entries:
                        db.execute(
                            "DELETE FROM labels WHERE rowid IN (SELECT rowid FROM labels ORDER BY used LIMIT ?)",
                            (count - self.max_entries,),
                        )
            except sqlite3.Error as exc:
                if not (_damaged(exc) and self._set_aside(exc)):
                    warnings.warn(f"label cache {self.path} could not be written ({exc})", ClipzeroWarning,
                                  stacklevel=3)  # fmt: skip

    def __len__(self) -> int:
        with self._lock:
            db = self._connect()
            return 0 if db is None else int(db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])


_DEFAULTS: dict[Path, LabelCache] = {}
_MEMORY = MemoryLabelCache()


def _damaged(exc: Exception) -> bool:
    """SQLite's 'file is not a database' and 'malformed': the file is damaged (not locked, not read-only)."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def default_label_cache() -> LabelCache:
    """The cache under the current CLIPZERO_HOME (one object per location)."""
    path = home() / "cache" / "labels.sqlite"
    if path not in _DEFAULTS:
        _DEFAULTS[path] = LabelCache(path)
    return _DEFAULTS[path]


def memory_label_cache() -> MemoryLabelCache:
    """This process's in-memory label cache."""
    return _MEMORY
