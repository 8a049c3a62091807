"""Dedup's workers: the pictures loaded and the pairs decided on every core.

On Linux the work runs in forked processes, so that the Python between OpenCV's calls is not held to one core by the
interpreter's lock. Their pictures live in one block of shared memory, allocated before the fork: a worker that loads
a picture writes its pixels there, and any worker (and the parent) reads them from there, so no picture is sent
between processes or held twice. Elsewhere, and for small jobs, threads do the same work on pictures held in the
parent.
"""

from __future__ import annotations

import mmap
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import numpy as np

from .machine import lower_priority

if TYPE_CHECKING:
    from .samepicture import Match, Picture

__all__ = ["FORK_FROM", "Workers"]

#: Pictures from which the work forks processes rather than using threads.
FORK_FROM = 16

#: What the forked workers see: set in the parent while they fork, under the lock.
_FORKING = threading.Lock()
_BOARD: _Board | None = None
_LOAD: Callable[[str], Picture | None] | None = None
_MINE: dict[int, Picture] = {}  # in a worker: the pictures it has built from the board (their features kept)


class Workers:
    """Loads the pictures of ``paths`` (slot i is ``paths[i]``) and decides pairs of slots, in parallel."""

    def __init__(self, paths: Sequence[str], load: Callable[[str], Picture | None], workers: int | None = None) -> None:
        import multiprocessing

        import cv2

        from .machine import usable_cores

        self.paths, self.load_one = list(paths), load
        self.workers = workers or min(usable_cores(), 8)
        # the pictures and the pairs run in parallel, so OpenCV's own threads would only compete; set before the
        # fork, which must not find OpenCV's thread pool running (a worker that touched it would hang)
        self.inner = cv2.getNumThreads()
        cv2.setNumThreads(1)
        self.board: _Board | None = None
        self.pictures: dict[int, Picture] = {}
        self.pool: Executor
        if self.workers > 1 and len(self.paths) >= FORK_FROM and sys.platform.startswith("linux"):
            try:
                self.board = _Board(len(self.paths))
            except (OSError, ValueError, MemoryError):  # no shared block that large here: threads will do
                self.board = None
        if self.board is not None:
            global _BOARD, _LOAD
            with _FORKING:  # one dedup's block and loader at a time in the globals, until its workers have forked
                self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                                initializer=lower_priority)  # fmt: skip
                _BOARD, _LOAD = self.board, load
                try:
                    with warnings.catch_warnings():  # the parent's other threads (FAISS's, a server's) stay idle
                        warnings.simplefilter("ignore", DeprecationWarning)  # in the forks, which use none of them
                        self.pool.submit(int).result()  # the first task forks every worker, with the globals set
                except (OSError, BrokenProcessPool):  # no processes to be had here (a limit, a sandbox)
                    self.pool.shutdown(cancel_futures=True)
                    self.board = None
                finally:
                    _BOARD, _LOAD = None, None
        if self.board is None:
            self.pool = ThreadPoolExecutor(self.workers)

    def load(self, stop: Callable[[], None] = lambda: None) -> list[Picture | None]:
        """Every slot's picture (None: unreadable); on the board, views of the shared pixels. ``stop`` is called as
        each chunk of pictures comes in, and raises to end the work."""
        found: list[Picture | None] = [None] * len(self.paths)
        size = max(1, min(16, len(self.paths) // (4 * self.workers)))
        slots = list(enumerate(self.paths))
        chunks = [slots[i : i + size] for i in range(0, len(slots), size)]
        if self.board is None:  # threads: decoding and OpenCV release the interpreter's lock
            for loaded in self.pool.map(_load, [self.load_one] * len(chunks), chunks):
                stop()
                for slot, picture in loaded:
                    found[slot] = picture
        else:
            for shown in self.pool.map(_load_on_board, chunks):
                stop()
                for slot in shown:
                    found[slot] = self.board.picture(slot)
        self.pictures = {slot: p for slot, p in enumerate(found) if p is not None}
        return found

    def submit(self, pairs: list[tuple[int, int]]) -> Future[list[Match | bool]]:
        """Decide pairs of slots (:func:`clipzero.samepicture.decide`: the kept picture first)."""
        if self.board is None:
            return self.pool.submit(_decide, self.pictures, pairs)
        return self.pool.submit(_decide_on_board, pairs)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        import cv2

        self.pool.shutdown(cancel_futures=True)
        cv2.setNumThreads(self.inner)


class _Board:
    """Pictures in memory shared with forked workers: each slot's pixels and grey at the working size (up to
    :data:`~clipzero.samepicture.WORK_SIDE` on a side), its screen layouts, sizes and sharpness."""

    def __init__(self, slots: int) -> None:
        from .samepicture import WORK_SIDE
        from .samescreen import COLOUR_SIZE, LAYOUT_SHAPE

        side = WORK_SIDE
        parts = {"rgb": (np.uint8, (side, side, 3)), "grey": (np.uint8, (side, side)),
                 "layouts": (np.float32, LAYOUT_SHAPE), "colours": (np.float32, (COLOUR_SIZE,)),
                 "sizes": (np.int64, (4,)), "sharpness": (np.float64, ())}  # fmt: skip
        sizes = {name: slots * int(np.prod(shape, dtype=np.int64)) * np.dtype(kind).itemsize
                 for name, (kind, shape) in parts.items()}  # fmt: skip
        self.memory = mmap.mmap(-1, sum(sizes.values()))  # anonymous and shared: the forks see one block
        offset, arrays = 0, {}
        for name, (kind, shape) in parts.items():
            arrays[name] = np.frombuffer(self.memory, kind, sizes[name] // np.dtype(kind).itemsize,
                                         offset).reshape(slots, *shape)  # fmt: skip
            offset += sizes[name]
        self.rgb, self.grey, self.layouts = arrays["rgb"], arrays["grey"], arrays["layouts"]
        self.colours, self.sizes, self.sharpness = arrays["colours"], arrays["sizes"], arrays["sharpness"]

    def put(self, slot: int, picture: Picture) -> None:
        h, w = picture.grey.shape
        self.rgb[slot, :h, :w] = picture.rgb
        self.grey[slot, :h, :w] = picture.grey
        self.layouts[slot] = picture.layouts
        self.colours[slot] = picture.colours
        self.sizes[slot] = (picture.width, picture.height, h, w)
        self.sharpness[slot] = picture.sharpness

    def picture(self, slot: int) -> Picture:
        from .samepicture import Picture

        width, height, h, w = (int(v) for v in self.sizes[slot])
        return Picture(width, height, self.rgb[slot, :h, :w], self.grey[slot, :h, :w], float(self.sharpness[slot]),
                       self.layouts[slot], self.colours[slot])  # fmt: skip




def _load(load: Callable[[str], Picture | None], slots: list[tuple[int, str]]) -> list[tuple[int, Picture | None]]:
    return [(slot, load(path)) for slot, path in slots]


def _load_on_board(slots: list[tuple[int, str]]) -> list[int]:
    """In a worker: load each path and put it on the board; the slots it could read."""
    assert _BOARD is not None and _LOAD is not None
    out = []
    for slot, path in slots:
        picture = _LOAD(path)
        if picture is not None:
            _BOARD.put(slot, picture)
            out.append(slot)
    return out


def _decide_on_board(pairs: list[tuple[int, int]]) -> list[Match | bool]:
    assert _BOARD is not None
    for slot in {s for pair in pairs for s in pair} - _MINE.keys():
        _MINE[slot] = _BOARD.picture(slot)
    return _decide(_MINE, pairs)


def _decide(pictures: dict[int, Picture], pairs: list[tuple[int, int]]) -> list[Match | bool]:
    from .samepicture import decide

    return [decide(pictures[a], pictures[b]) for a, b in pairs]
