"""Duplicate images in a store: the same file twice, and near-duplicates (resized, re-compressed, cropped, turned,
lightly edited), each with the kind of copy it is, so that a person can delete on the list.

Exact duplicates are paths that share one content hash (sha256), which a store already keeps as one row. Near
duplicates are found in three steps:

1. **candidates**: a FAISS range search over the store's vectors finds every pair whose cosine similarity reaches
   the cut (by the index, not by comparing all pairs in Python); pictures whose middles have the same grey layout
   join them (a turned copy can be far from its original by the model, never by its pixels);
2. **screen**: each pair's coarse grey and colour layouts must be loosely alike;
3. **verification** (:mod:`clipzero.samepicture`): the two pictures are aligned (local features and RANSAC, or a
   placement of one inside the other, refined by ECC) and compared after a fitted brightness and colour change. A
   recoloured, moved or reshaped object keeps them apart; a copy is named by what was done to it (:data:`KINDS`).

Verified pairs join into groups, and in each group the best image is named as the one to keep: the largest (width
x height), then the sharpest (variance of the Laplacian), then the shortest path. Every other member is checked
against that image itself, and carries its match: the kinds of copy, the share of the kept picture it shows, its
turn. The cuts are chosen by measurement (``benchmarks/dedup.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .dedupverify import components, near_verified
from .errors import ConfigError
from .samepicture import KINDS  # the kinds of copy a near member may be (numpy only: OpenCV loads when used)
from .video import parse_frame_name, source_file

if TYPE_CHECKING:
    from .samepicture import Match, Picture
    from .store import EmbeddingStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "KINDS",
    "MEASURED_THRESHOLDS",
    "DedupReport",
    "DuplicateGroup",
    "GroupMember",
    "check_request",
    "default_threshold",
    "find_duplicates",
    "write_report",
]

#: The candidate cut by model family (the spec's name before any ':' or '@'), measured with benchmarks/dedup.py on
#: distinct images, their edited copies and changed scenes: low enough that verification, not the embedding, decides.
MEASURED_THRESHOLDS = {"clipzero-shapes": 0.4}

#: The candidate cut for families not measured here (real CLIP models keep edited copies of a photo far above it);
#: measure your own set with ``python benchmarks/dedup.py --model SPEC``.
DEFAULT_THRESHOLD = 0.8

#: At most this many neighbours per image are kept (a burst of near-identical photos still makes one group).
_MAX_NEIGHBOURS = 64


@dataclass(frozen=True)
class GroupMember:
    """One image of a group: its path, its similarity to the group's kept image, what decided the choice, and (for a
    near member other than the kept one) how it matches the kept image."""

    path: str
    similarity: float
    sha256: str
    width: int = 0
    height: int = 0
    sharpness: float = 0.0
    readable: bool = True
    match: Match | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.match.kinds if self.match is not None else ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "similarity": round(self.similarity, 4), "sha256": self.sha256,
                "width": self.width, "height": self.height, "sharpness": round(self.sharpness, 2),
                **({} if self.readable else {"readable": False}),
                **({} if self.match is None else {"match": self.match.to_dict()})}  # fmt: skip


@dataclass
class DuplicateGroup:
    """Images that are the same picture: ``kind`` is ``exact`` (the same bytes) or ``near``; ``keep`` is the best."""

    kind: str
    keep: GroupMember
    others: list[GroupMember]

    @property
    def members(self) -> list[GroupMember]:
        return [self.keep, *self.others]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "keep": self.keep.path, "members": [m.to_dict() for m in self.members]}


@dataclass
class DedupReport:
    """The groups found in a store, with the cut used and how long it took."""

    threshold: float
    images: int
    groups: list[DuplicateGroup] = field(default_factory=list)
    seconds: float = 0.0
    verified: bool = True

    @property
    def redundant(self) -> int:
        """Images that could go (every member but the one to keep)."""
        return sum(len(g.others) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "images": self.images, "verified": self.verified,
                "groups": [g.to_dict() for g in self.groups], "redundant": self.redundant,
                "seconds": round(self.seconds, 3)}  # fmt: skip


def default_threshold(model: str) -> float:
    """The measured cut for a model spec or id (``clipzero-shapes@sha256:...`` -> clipzero-shapes), else
    :data:`DEFAULT_THRESHOLD`."""
    family = model.split("@")[0].split(":")[0]
    return MEASURED_THRESHOLDS.get(family, DEFAULT_THRESHOLD)


def check_request(threshold: float | None = None, out: str | os.PathLike[str] | None = None, *,
                  verify: bool = False, kinds: Iterable[str] | None = None) -> None:  # fmt: skip
    """A dedup request that can be carried out: a candidate cut in (0, 1], a report file ending in .json or .csv,
    known kinds, and OpenCV installed when pairs are to be verified.

    Raises:
        ConfigError: any is not.
        MissingExtraError: ``verify`` without the ``dedup`` extra.
    """
    if threshold is not None and not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"--threshold {threshold}: a cosine similarity in (0, 1]")
    if out is not None and Path(out).suffix.lower() not in (".json", ".csv"):
        raise ConfigError(f"--out {out}: use a .json or .csv file")
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise ConfigError(f"--kinds {','.join(unknown)}: not a kind of copy; use {', '.join(KINDS)}")
    if verify:
        from .extras import require

        require("dedup", "dedup's pixel verification (--no-verify groups by the embedding alone)")


def find_duplicates(store: EmbeddingStore, threshold: float | None = None, *, exact_only: bool = False,
                    verify: bool = True, kinds: Iterable[str] | None = None, workers: int | None = None,
                    stop: Callable[[], None] | None = None) -> DedupReport:  # fmt: skip
    """Group a store's duplicate images.

    Args:
        store: an open store (its model is not needed: only the stored vectors are read, and the grouped files).
        threshold: the cosine similarity at which two images become candidates (default: measured for the store's
            model family, :func:`default_threshold`).
        exact_only: only the same bytes under several paths.
        verify: check candidates on their pixels (False: the embedding cut alone decides, as a single distance, and
            members carry no kinds).
        kinds: only near members whose every kind is among these (``{"resized", "re-encoded"}``: leave crops, turns
            and edits alone); default every kind.
        workers: parallel workers for the verification: processes on Linux (forked, the pictures in memory they
            share), threads elsewhere (default: the machine's cores, at most 8).
        stop: called between steps of the verification; raises to stop the work (a server's request deadline).

    Returns:
        A :class:`DedupReport`: exact groups first, then near groups, larger groups first.

    Raises:
        ConfigError: a threshold outside (0, 1], or an unknown kind.
        MissingExtraError: ``verify`` without OpenCV.
    """
    check_request(threshold, verify=verify and not exact_only, kinds=kinds)
    allowed = set(kinds) if kinds is not None else set(KINDS)
    cut = default_threshold(store.model_id) if threshold is None else float(threshold)
    start = time.perf_counter()
    ids, vectors, paths, shas = store.vectors()
    report = DedupReport(cut, len(ids), verified=verify)
    looks = _Looks()
    videos: set[tuple[str, ...]] = set()
    for row, image_id in enumerate(ids.tolist()):
        names = paths.get(image_id, [])
        if len(names) > 1 and any(parse_frame_name(n) for n in names):  # copies of one video share every frame
            files = tuple(sorted({source_file(n) for n in names}))
            if len(files) < 2 or files in videos:
                continue
            videos.add(files)
            names = list(files)  # one group per set of video copies, naming the files
        if len(names) > 1 and "exact" in allowed:
            report.groups.append(_ranked("exact", [looks.member(p, 1.0, shas[row]) for p in names]))
    if not exact_only and len(ids) > 1:
        # a row's path in near groups: the one its exact group keeps (the same bytes under the shortest name)
        first = [max(paths.get(int(i), [""]), key=lambda p: (-len(p), p)) for i in ids.tolist()]
        pairs = _pairs(vectors, cut)
        if verify:
            _near_verified(report, pairs, first, vectors, shas, looks, allowed, workers, stop or (lambda: None))
        else:
            _near_unverified(report, pairs, first, vectors, shas, looks)
    report.groups.sort(key=lambda g: (g.kind != "exact", -len(g.others), g.keep.path))
    report.seconds = time.perf_counter() - start
    return report


def _near_verified(report: DedupReport, pairs: list[tuple[int, int]], first: list[str], vectors: np.ndarray,
                   shas: list[str], looks: _Looks, allowed: set[str], workers: int | None,
                   stop: Callable[[], None]) -> None:  # fmt: skip
    """Groups checked on their pixels: the candidates' pictures loaded and their pairs decided on every core."""
    from .dedupwork import Workers

    rows = sorted({r for pair in pairs for r in pair})
    with Workers([first[r] for r in rows], _look, workers) as pool:
        for r, picture in zip(rows, pool.load(stop)):
            looks.seen[first[r]] = picture
        found = near_verified(pairs, rows, vectors, pool, lambda r: _rank(looks.member(first[r], 1.0, shas[r])),
                              allowed, stop)  # fmt: skip
    for keep, members in found:
        others = [replace(looks.member(first[r], 1.0, shas[r]), match=match,
                          similarity=min(float(vectors[r] @ vectors[keep]), 1.0)) for r, match in members]  # fmt: skip
        report.groups.append(DuplicateGroup("near", looks.member(first[keep], 1.0, shas[keep]),
                                            sorted(others, key=lambda m: (-m.similarity, m.path))))  # fmt: skip


def _near_unverified(report: DedupReport, pairs: list[tuple[int, int]], first: list[str], vectors: np.ndarray,
                     shas: list[str], looks: _Looks) -> None:  # fmt: skip
    """Groups by the embedding cut alone: grown from the image most others match, and only what matches it directly
    (a chain of pairs a~b, b~c is not a group)."""
    neighbours: dict[int, set[int]] = {}
    for a, b in pairs:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    for component in components(pairs):
        left = set(component)
        while len(left) > 1:
            seed = max(left, key=lambda r: (len(neighbours[r] & left), -r))
            group = [seed, *sorted(neighbours[seed] & left)]
            if len(group) == 1:
                break
            members = [looks.member(first[r], 1.0, shas[r]) for r in group]
            keep_row = group[members.index(_best(members))]
            scored = [replace(m, similarity=min(float(vectors[r] @ vectors[keep_row]), 1.0))
                      for m, r in zip(members, group)]  # fmt: skip
            report.groups.append(_ranked("near", scored))
            left -= set(group)


class _Looks:
    """Each grouped file read once: its size, sharpness and what the pixel check needs (None when it cannot be
    read). Safe to fill from several threads (a file read twice at worst)."""

    def __init__(self) -> None:
        self.seen: dict[str, Picture | None] = {}

    def of(self, path: str) -> Picture | None:
        if path not in self.seen:
            self.seen[path] = _look(path)
        return self.seen[path]

    def member(self, path: str, similarity: float, sha: str) -> GroupMember:
        found = self.of(path)
        if found is None:  # a file gone or unreadable since it was stored: listed, never the one to keep
            return GroupMember(path, similarity, sha, readable=False)
        return GroupMember(path, similarity, sha, found.width, found.height, found.sharpness)


def _look(path: str) -> Picture | None:
    import io

    from PIL import Image

    from .errors import ImageError
    from .images import load_image, read_image_file
    from .samepicture import picture

    try:
        data = read_image_file(path)[0]  # read once: for the header's size and for the pixels
        image = load_image(data, draft=(512, 512), name=path)
    except (ImageError, OSError, ValueError):
        return None
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size  # the file's own size (a JPEG decodes at a reduced scale here)
    except Exception:  # RAW, HEIC without the plugin registered, ...: the decoded size
        width, height = image.size
    return picture(image, width, height)


def _pairs(vectors: np.ndarray, cut: float) -> list[tuple[int, int]]:
    """Row pairs (i < j) with inner product >= cut, by a FAISS range search: exact below 20,000 vectors, an IVF
    index (probing the 8 nearest lists) above."""
    import faiss

    n, dim = vectors.shape
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if n < 20_000:
        index: Any = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.train(data[np.random.default_rng(0).choice(n, min(n, 40 * lists), replace=False)])
        index.nprobe = 8
    index.add(data)
    pairs: list[tuple[int, int]] = []
    for lo in range(0, n, 8192):  # in blocks, so the result lists stay small
        limits, scores, found = index.range_search(data[lo : lo + 8192], cut)
        for i in range(len(limits) - 1):
            row = lo + i
            neighbours = found[limits[i] : limits[i + 1]]
            if len(neighbours) > _MAX_NEIGHBOURS:  # the closest ones
                neighbours = neighbours[np.argsort(-scores[limits[i] : limits[i + 1]])[:_MAX_NEIGHBOURS]]
            pairs.extend((row, int(j)) for j in neighbours if j > row)
    return pairs


def _rank(m: GroupMember) -> tuple[Any, ...]:
    """Which image to keep: readable, then the most pixels, then the sharpest, then the shortest path."""
    return (m.readable, m.width * m.height, round(m.sharpness, 1), -len(m.path), m.path)


def _best(members: list[GroupMember]) -> GroupMember:
    return max(members, key=_rank)


def _ranked(kind: str, members: list[GroupMember]) -> DuplicateGroup:
    best = _best(members)
    others = sorted((m for m in members if m is not best), key=lambda m: (-m.similarity, m.path))
    return DuplicateGroup(kind, best, others)


def write_report(report: DedupReport, out: str | os.PathLike[str]) -> Path:
    """Write the groups as JSON (``.json``: the report) or CSV (``.csv``: one row per member, with its group number,
    kind, the path to keep and whether this member is it). Written to a temporary file and renamed."""
    import csv
    import io
    import json

    check_request(out=out)
    target = Path(out)
    if target.suffix.lower() == ".json":
        text = json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n"
    else:  # .csv: check_request allows no other ending
        from .outputs import csv_cell  # paths are inert in a spreadsheet

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["group", "kind", "keep", "path", "is_keep", "match", "kept_area", "angle", "similarity",
                         "width", "height", "sharpness", "sha256"])  # fmt: skip
        for number, group in enumerate(report.groups, 1):
            for m in group.members:
                match = m.match.to_dict() if m.match else {}
                kinds = "exact" if group.kind == "exact" and m is not group.keep else "+".join(m.kinds)
                writer.writerow([number, group.kind, csv_cell(group.keep.path), csv_cell(m.path), m is group.keep,
                                 kinds, match.get("kept_area", ""), match.get("angle", ""), f"{m.similarity:.4f}",
                                 m.width, m.height, f"{m.sharpness:.2f}", m.sha256])  # fmt: skip
        text = buffer.getvalue()
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return target
