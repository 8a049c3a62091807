"""The server's temp folder is bounded and cleaned: a total quota for uploads and result files, removal by age.

Everything the web UI writes (a client's uploads, batch tag result files, the pictures Gradio serves back) lives in
the server's own upload folder. :class:`UploadQuota` keeps it bounded:

* an upload is accepted only while the folder, plus the uploads still arriving, stays under ``limit_bytes``
  (``--max-temp-mb``); past it the client gets 507 before (or while) its bytes arrive, and nothing of it is kept;
* files older than ``keep_s`` are removed (never sooner than the longest request may still read them: the UI's
  batch tag, 10x ``--request-timeout``), checked before uploads and once a minute; a file's age counts from when
  it was placed in the folder (a copy that kept an old modification time is not old), and the files the UI
  itself put there at start (its example pictures) stay while the server runs;
* the whole folder is removed when the server stops (SIGTERM and SIGINT included; see ``server.serve``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

__all__ = ["UploadQuota"]


class UploadQuota:
    """Bytes on disk under ``root``, bounded.

    Args:
        root: the server's upload folder.
        limit_bytes: the most bytes the folder may hold, uploads still arriving included.
        keep_s: how long a file is kept after it was last written.
    """

    def __init__(self, root: Path, limit_bytes: int, keep_s: float) -> None:
        self.root = root
        self.limit = limit_bytes
        self.keep_s = keep_s
        self._arriving = 0  # bytes of uploads counted while they stream in
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self._pinned: set[str] = set()
        self.refused = 0

    def pin_existing(self) -> int:
        """Keep the files in the folder now (the UI's own, put there at start) for as long as the server runs."""
        self._pinned = {os.path.join(folder, name) for folder, _, files in os.walk(self.root) for name in files}
        return len(self._pinned)

    def used(self) -> int:
        """Bytes of the files in the folder now (links are not followed)."""
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue  # removed meanwhile
        return total

    def reserve(self, declared: int | None, most: int) -> int | None:
        """Count an arriving upload against the quota (old files swept first, at most every 30 s).

        Args:
            declared: its Content-Length, or None when it is sent in chunks.
            most: the most one upload may be (the per-request limit).

        Returns:
            The bytes counted for it (its declared size, or all the room left up to ``most``), or None when it does
            not fit (nothing is counted then).
        """
        self.sweep(every_s=30.0)
        with self._lock:
            room = self.limit - self.used() - self._arriving
            size = declared if declared is not None else min(most, room)
            if size <= 0 or size > room:
                self.refused += 1
                return None
            self._arriving += size
            return size

    def release(self, size: int) -> None:
        """Stop counting ``size`` arriving bytes (the upload ended: it is on disk now, or was refused)."""
        with self._lock:
            self._arriving = max(0, self._arriving - size)

    def sweep(self, now: float | None = None, every_s: float = 0.0) -> int:
        """Remove files not written for ``keep_s`` and the folders they leave empty; returns the files removed.

        Args:
            every_s: do nothing when the last sweep was less than this many seconds ago.
        """
        now = time.time() if now is None else now
        if now - self._last_sweep < every_s:
            return 0
        self._last_sweep = now
        removed = 0
        for folder, folders, files in os.walk(self.root, topdown=False):
            for name in files:
                path = os.path.join(folder, name)
                if path in self._pinned:
                    continue
                try:
                    info = os.lstat(path)
                    if now - max(info.st_mtime, info.st_ctime) > self.keep_s:  # placed here, not first written
                        os.unlink(path)
                        removed += 1
                except OSError:
                    continue
            if folder != str(self.root):
                try:
                    os.rmdir(folder)  # only when empty
                except OSError:
                    pass
            del folders
        return removed

    def start_sweeper(self, every_s: float = 60.0) -> threading.Thread:
        """A daemon thread that sweeps every ``every_s`` seconds while the process runs."""

        def run() -> None:
            while self.root.exists():
                time.sleep(every_s)
                self.sweep()

        thread = threading.Thread(target=run, name="clipzero-upload-sweeper", daemon=True)
        thread.start()
        return thread

    def remove(self) -> None:
        """Remove the folder and everything in it (the server is stopping)."""
        shutil.rmtree(self.root, ignore_errors=True)
