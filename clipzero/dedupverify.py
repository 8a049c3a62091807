"""Dedup's verified grouping: candidates from the vectors and from the pictures' layouts, screened, verified by
:mod:`clipzero.samepicture` on every core (:mod:`clipzero.dedupwork`), and grouped around the image to keep."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .dedupwork import Workers
    from .samepicture import Match, Picture

__all__ = ["components", "layout_pairs", "near_verified"]

#: Pictures whose middles' grey layouts reach this cosine are candidates too, whatever their vectors say.
_LAYOUT_NEIGHBOUR_CUT = 0.8
_LAYOUT_NEIGHBOURS = 8

#: Pairs this close by their vectors go to verification even when their layouts differ (a heavy crop).
_SURE = 0.95

#: Pairs sent to a worker at a time.
_CHUNK = 4


def near_verified(pairs: list[tuple[int, int]], rows: list[int], vectors: np.ndarray, pool: Workers,
                  rank: Callable[[int], tuple[Any, ...]], allowed: set[str], stop: Callable[[], None],
                  ) -> list[tuple[int, list[tuple[int, Match]]]]:  # fmt: skip
    """Candidates (vectors and layouts), screened, verified; groups as (the row to keep, [(a member's row, its match
    to the kept picture)]), each member verified against the kept picture itself, not through a chain of others.

    Args:
        rows: the rows whose pictures ``pool`` has loaded (slot i is row ``rows[i]``).
        rank: a row's claim to be kept (the highest is kept).
        stop: called between chunks of pairs; raises to end the work.
    """
    from .samepicture import Match
    from .samescreen import alike

    pictures = pool.pictures
    slot = {r: i for i, r in enumerate(rows)}
    candidates = {(slot[a], slot[b]) for a, b in pairs if slot[a] in pictures and slot[b] in pictures}
    candidates |= layout_pairs(pictures)
    order = {s: rank(rows[s]) for s in pictures}
    listed = sorted(candidates)
    passed = alike({s: p.layouts for s, p in pictures.items()}, {s: p.colours for s, p in pictures.items()}, listed)
    screened = [(a, b) if order[a] > order[b] else (b, a) for (a, b), ok in zip(listed, passed)  # the likely keep first
                if ok or float(vectors[rows[a]] @ vectors[rows[b]]) >= _SURE]  # fmt: skip
    screened.sort(key=lambda pair: (order[pair[0]], order[pair[1]]), reverse=True)  # likely keeps' pairs first
    matches: dict[tuple[int, int], Match | None] = {}
    apart: dict[int, set[int]] = {}  # slots decided not to be copies of a slot

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
    while True:
        # a pair already joined through verified pairs adds nothing: the groups are checked against the kept
        # picture afterwards anyway (a burst's copies need not be compared with each other); a few chunks are kept
        # running, each taken from the list as a worker frees, so that the skipping knows the most
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
            keep = max(left, key=lambda s: order[s])
            others = sorted(left - {keep})
            fresh = [(keep, s) for s in others if (keep, s) not in matches]
            for pair, result in zip(fresh, pool.submit(fresh).result() if fresh else []):
                record(pair, result)
            chosen = []
            for s in others:
                match = matches[(keep, s)]
                if match is not None and set(match.kinds) <= allowed:
                    chosen.append((s, match))
            if not chosen:
                left.discard(keep)
                continue
            groups.append((rows[keep], [(rows[s], match) for s, match in chosen]))
            left -= {keep, *(s for s, _ in chosen)}
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
