"""Dedup's verified grouping: candidates from the vectors and from the pictures' layouts, screened, verified by
:mod:`clipzero.samepicture` on every core, and grouped around the image to keep."""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .samepicture import Match, Picture

__all__ = ["components", "layout_pairs", "near_verified"]

#: Pictures whose middles' grey layouts reach this cosine are candidates too, whatever their vectors say.
_LAYOUT_NEIGHBOUR_CUT = 0.8
_LAYOUT_NEIGHBOURS = 8

#: Pairs this close by their vectors go to verification even when their layouts differ (a heavy crop).
_SURE = 0.95

#: Pairs sent to a worker at a time.
_CHUNK = 4

#: Screened pairs from which the verification forks processes rather than using threads.
_FORK_FROM = 16


def near_verified(pairs: list[tuple[int, int]], first: list[str], vectors: np.ndarray,
                  look: Callable[[str], Picture | None], rank: Callable[[int], tuple[Any, ...]], allowed: set[str],
                  workers: int | None, stop: Callable[[], None],
                  ) -> list[tuple[int, list[tuple[int, Match]]]]:  # fmt: skip
    """Candidates (vectors and layouts), screened, verified; groups as (the row to keep, [(a member's row, its match
    to the kept picture)]), each member verified against the kept picture itself, not through a chain of others.

    Args:
        look: a path's picture (None: unreadable), safe to call from several threads.
        rank: a row's claim to be kept (the highest is kept).
        stop: called before each batch of pairs; raises to end the work.
    """
    import cv2

    inner = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the pictures and the pairs run in parallel: OpenCV's own threads would only compete
    try:
        return _verified_groups(pairs, first, vectors, look, rank, allowed, workers or min(os.cpu_count() or 1, 8),
                                stop)  # fmt: skip
    finally:
        cv2.setNumThreads(inner)


def _verified_groups(pairs: list[tuple[int, int]], first: list[str], vectors: np.ndarray,
                     look: Callable[[str], Picture | None], rank: Callable[[int], tuple[Any, ...]], allowed: set[str],
                     threads: int, stop: Callable[[], None],
                     ) -> list[tuple[int, list[tuple[int, Match]]]]:  # fmt: skip
    from .samepicture import Match
    from .samescreen import alike

    rows = sorted({r for pair in pairs for r in pair})
    with ThreadPoolExecutor(threads) as loaders:  # decoding and OpenCV release the GIL
        looked = list(loaders.map(lambda r: look(first[r]), rows))
    pictures = {r: p for r, p in zip(rows, looked) if p is not None}
    stop()
    candidates = {(a, b) for a, b in pairs if a in pictures and b in pictures} | layout_pairs(pictures)
    order = {r: rank(r) for r in pictures}
    listed = sorted(candidates)
    passed = alike({r: p.layouts for r, p in pictures.items()}, {r: p.colours for r, p in pictures.items()}, listed)
    screened = [(a, b) if order[a] > order[b] else (b, a) for (a, b), ok in zip(listed, passed)  # the likely keep first
                if ok or float(vectors[a] @ vectors[b]) >= _SURE]
    screened.sort(key=lambda pair: (order[pair[0]], order[pair[1]]), reverse=True)  # likely keeps' pairs first
    matches: dict[tuple[int, int], Match | None] = {}
    apart: dict[int, set[int]] = {}  # rows decided not to be copies of a row

    def record(pair: tuple[int, int], found: Match | bool) -> Match | None:
        matches[pair] = found if isinstance(found, Match) else None
        if matches[pair] is None:
            apart.setdefault(pair[0], set()).add(pair[1])
            apart.setdefault(pair[1], set()).add(pair[0])
        return matches[pair]

    def known(a: int, b: int) -> bool:
        """Joined already, or a is no copy of a picture joined with b (or b of one joined with a): a joins b's group
        only by matching the group's kept picture, the likely keeps' pairs come first, and a changed scene differs
        from every copy of the scene, so the pair need not be compared."""
        return joined.same(a, b) or any(joined.same(z, b) for z in apart.get(a, ())) or \
            any(joined.same(z, a) for z in apart.get(b, ()))  # fmt: skip

    joined = _Joined()
    edges = []
    waiting = iter(screened)
    running: dict[Future[list[Match | bool]], list[tuple[int, int]]] = {}
    with _Workers(pictures, threads, len(screened)) as pool:
        while True:
            # a pair already joined through verified pairs adds nothing: the groups are checked against the kept
            # picture afterwards anyway (a burst's copies need not be compared with each other); a few chunks are
            # kept running, each taken from the list as a worker frees, so that the skipping knows the most
            while len(running) < 2 * pool.workers:
                chunk = list(itertools.islice((pair for pair in waiting if not known(*pair)), _CHUNK))
                if not chunk:
                    break
                running[pool.submit(chunk)] = chunk
            if not running:
                break
            stop()
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                for pair, result in zip(running.pop(future), future.result()):
                    if record(pair, result) is not None:
                        edges.append(pair)
                        joined.join(*pair)
        groups = []
        for component in components(edges):
            left = set(component)
            while len(left) > 1:
                stop()
                keep = max(left, key=lambda r: order[r])
                others = sorted(left - {keep})
                fresh = [(keep, r) for r in others if (keep, r) not in matches]
                for pair, result in zip(fresh, pool.submit(fresh).result() if fresh else []):
                    record(pair, result)
                members = []
                for r in others:
                    match = matches[(keep, r)]
                    if match is not None and set(match.kinds) <= allowed:
                        members.append((r, match))
                if not members:
                    left.discard(keep)
                    continue
                groups.append((keep, members))
                left -= {keep, *(r for r, _ in members)}
    return groups


def layout_pairs(pictures: dict[int, Picture]) -> set[tuple[int, int]]:
    """Pairs whose middles' grey layouts are close (FAISS, the nearest few of each): the candidates a model's vectors
    miss, such as a turned copy."""
    import faiss

    if len(pictures) < 2:
        return set()
    rows = list(pictures)
    middles = np.ascontiguousarray(np.stack([pictures[r].layouts[-1] for r in rows]), dtype=np.float32)
    index = faiss.IndexFlatIP(middles.shape[1])
    index.add(middles)
    scores, found = index.search(middles, min(_LAYOUT_NEIGHBOURS + 1, len(rows)))
    out = set()
    for i, (row_scores, row_found) in enumerate(zip(scores, found)):
        for score, j in zip(row_scores, row_found):
            if j >= 0 and j != i and score >= _LAYOUT_NEIGHBOUR_CUT:
                out.add((min(rows[i], rows[int(j)]), max(rows[i], rows[int(j)])))
    return out


#: The pictures the verifying processes read: set before they are forked, so each has them without a copy sent.
_SHARED: dict[int, Picture] = {}


def _decide_shared(pairs: list[tuple[int, int]]) -> list[Match | bool]:
    return _decide_each(_SHARED, pairs)


def _decide_each(pictures: dict[int, Picture], pairs: list[tuple[int, int]]) -> list[Match | bool]:
    from .samepicture import decide

    return [decide(pictures[a], pictures[b]) for a, b in pairs]


class _Workers:
    """Chunks of pairs decided in parallel: in forked processes where the platform forks cleanly (Linux) and there
    are enough pairs to repay the start, so that the Python between OpenCV's calls runs on every core; else on
    threads."""

    def __init__(self, pictures: dict[int, Picture], workers: int, pairs: int) -> None:
        import multiprocessing

        self.pictures, self.workers = pictures, workers
        self.pool: Executor | None = None
        if workers > 1 and pairs >= _FORK_FROM and sys.platform.startswith("linux"):
            global _SHARED
            _SHARED = pictures  # the processes fork on the first chunk, and keep what they see here
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        else:
            self.pool = ThreadPoolExecutor(workers)

    def submit(self, pairs: list[tuple[int, int]]) -> Future[list[Match | bool]]:
        assert self.pool is not None
        if isinstance(self.pool, ProcessPoolExecutor):
            with warnings.catch_warnings():  # the parent's other threads (FAISS's, a server's) are not used there
                warnings.simplefilter("ignore", DeprecationWarning)
                return self.pool.submit(_decide_shared, pairs)
        return self.pool.submit(_decide_each, self.pictures, pairs)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        global _SHARED
        _SHARED = {}
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class _Joined:
    """Union-find over rows."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def root(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def same(self, a: int, b: int) -> bool:
        return self.root(a) == self.root(b)

    def join(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def components(pairs: list[tuple[int, int]]) -> list[set[int]]:
    """The connected components of a graph given by its edges."""
    joined = _Joined()
    for a, b in pairs:
        joined.join(a, b)
    groups: dict[int, set[int]] = {}
    for x in list(joined.parent):
        groups.setdefault(joined.root(x), set()).add(x)
    return list(groups.values())
