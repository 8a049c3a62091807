"""The persistent label cache: label embeddings kept under CLIPZERO_HOME, so text is encoded once per machine.

Keys are (model id, template-set content hash, normalised label); values are the label's class embedding
(float32, unit length). A second process classifying with the same labels, model and templates encodes no text.
SQLite in WAL mode makes concurrent readers and writers safe; a cache that cannot be written (read-only home)
is skipped with a warning, never an error.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .config import home
from .errors import ClipzeroWarning

__all__ = ["LabelCache", "default_label_cache"]

Key = tuple[str, str, str]


class LabelCache:
    """A SQLite table of label embeddings.

    Args:
        path: the database file (default: ``$CLIPZERO_HOME/cache/labels.sqlite``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else home() / "cache" / "labels.sqlite"
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS labels (model TEXT NOT NULL, templates TEXT NOT NULL, "
                    "label TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, templates, label))"
                )
                self._db = db
            except (OSError, sqlite3.Error) as exc:
                self._broken = True
                warnings.warn(
                    f"label cache {self.path} cannot be used ({exc}); labels are encoded each run",
                    ClipzeroWarning,
                    stacklevel=3,
                )
        return self._db

    def get_many(self, keys: Iterable[Key]) -> dict[Key, np.ndarray]:
        """The cached vectors for those keys that are present."""
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
            except sqlite3.Error as exc:
                warnings.warn(f"label cache {self.path} could not be read ({exc})", ClipzeroWarning, stacklevel=3)
            return found

    def put_many(self, items: dict[Key, np.ndarray]) -> None:
        """Store vectors (existing keys are kept: the same key always means the same vector)."""
        with self._lock:
            db = self._connect()
            if db is None or not items:
                return
            try:
                with db:
                    db.executemany(
                        "INSERT OR IGNORE INTO labels(model, templates, label, vector) VALUES (?, ?, ?, ?)",
                        [(*key, np.ascontiguousarray(v, np.float32).tobytes()) for key, v in items.items()],
                    )
            except sqlite3.Error as exc:
                warnings.warn(f"label cache {self.path} could not be written ({exc})", ClipzeroWarning, stacklevel=3)

    def __len__(self) -> int:
        with self._lock:
            db = self._connect()
            return 0 if db is None else int(db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])


_DEFAULTS: dict[Path, LabelCache] = {}


def default_label_cache() -> LabelCache:
    """The cache under the current CLIPZERO_HOME (one object per location)."""
    path = home() / "cache" / "labels.sqlite"
    if path not in _DEFAULTS:
        _DEFAULTS[path] = LabelCache(path)
    return _DEFAULTS[path]
