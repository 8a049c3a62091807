"""Duplicate images in a store: the same file twice, and near-duplicates (resized, re-compressed, cropped a little,
lightly edited).

Exact duplicates are paths that share one content hash (sha256), which a store already keeps as one row. Near
duplicates are found in two steps:

1. **candidates**: a FAISS range search over the store's vectors finds every pair whose cosine similarity reaches
   the threshold (by the index, not by comparing all pairs in Python);
2. **verification**: a single embedding distance is what makes merely similar photos (the same kind of thing, the
   same scene) look like duplicates, so each candidate pair is checked on its pixels: the correlation of the two
   pictures' grey layouts (32 x 32, brightness and contrast normalised), the best over small crops of either one,
   must reach :data:`LAYOUT_CUT`. Resizing, re-compression, brightness, a 10% crop and a small turn keep it high;
   another photo of a similar subject does not.

Verified pairs join into groups (connected components), and in each group the best image is named as the one to
keep: the largest (width x height), then the sharpest (variance of the Laplacian), then the shortest path. Every
member carries its similarity to that image. The cuts are chosen by measurement (``benchmarks/dedup.py``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .video import parse_frame_name, source_file

if TYPE_CHECKING:
    from .store import EmbeddingStore

__all__ = [
    "DEFAULT_THRESHOLD",
    "LAYOUT_CUT",
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
#: distinct images and their edited copies: low enough that verification, not the embedding, decides.
MEASURED_THRESHOLDS = {"clipzero-shapes": 0.4}

#: The candidate cut for families not measured here (real CLIP models keep edited copies of a photo far above it);
#: measure your own set with ``python benchmarks/dedup.py --model SPEC``.
DEFAULT_THRESHOLD = 0.8

#: The pixel check's cut: the best correlation of two pictures' normalised 32 x 32 grey layouts over small crops.
LAYOUT_CUT = 0.9

#: At most this many neighbours per image are kept (a burst of near-identical photos still makes one group).
_MAX_NEIGHBOURS = 64

#: The pixel check's colour cut: cosine of the two middles' chroma layouts.
_COLOUR_CUT = 0.8
_COLOUR_SIDE = 6

#: The side of the grey layouts the pixel check compares.
_SIDE = 32


@dataclass(frozen=True)
class GroupMember:
    """One image of a group: its path, its similarity to the group's kept image, and what decided the choice."""

    path: str
    similarity: float
    sha256: str
    width: int = 0
    height: int = 0
    sharpness: float = 0.0
    readable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "similarity": round(self.similarity, 4), "sha256": self.sha256,
                "width": self.width, "height": self.height, "sharpness": round(self.sharpness, 2),
                **({} if self.readable else {"readable": False})}  # fmt: skip


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

    @property
    def redundant(self) -> int:
        """Images that could go (every member but the one to keep)."""
        return sum(len(g.others) for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "images": self.images, "groups": [g.to_dict() for g in self.groups],
                "redundant": self.redundant, "seconds": round(self.seconds, 3)}  # fmt: skip


def default_threshold(model: str) -> float:
    """The measured cut for a model spec or id (``clipzero-shapes@sha256:...`` -> clipzero-shapes), else
    :data:`DEFAULT_THRESHOLD`."""
    family = model.split("@")[0].split(":")[0]
    return MEASURED_THRESHOLDS.get(family, DEFAULT_THRESHOLD)


def check_request(threshold: float | None = None, out: str | os.PathLike[str] | None = None) -> None:
    """A dedup request that can be carried out: a candidate cut in (0, 1], a report file ending in .json or .csv.

    Raises:
        ConfigError: either is not.
    """
    if threshold is not None and not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"--threshold {threshold}: a cosine similarity in (0, 1]")
    if out is not None and Path(out).suffix.lower() not in (".json", ".csv"):
        raise ConfigError(f"--out {out}: use a .json or .csv file")


def find_duplicates(store: EmbeddingStore, threshold: float | None = None, *, exact_only: bool = False,
                    verify: bool = True, layout_cut: float = LAYOUT_CUT) -> DedupReport:  # fmt: skip
    """Group a store's duplicate images.

    Args:
        store: an open store (its model is not needed: only the stored vectors are read, and the grouped files).
        threshold: the cosine similarity at which two images become candidates (default: measured for the store's
            model family, :func:`default_threshold`).
        exact_only: only the same bytes under several paths.
        verify: check candidates on their pixels (False: the embedding cut alone decides, as a single distance).
        layout_cut: the pixel check's cut (see :data:`LAYOUT_CUT`).

    Returns:
        A :class:`DedupReport`: exact groups first, then near groups, larger groups first.

    Raises:
        ConfigError: a threshold outside (0, 1].
    """
    check_request(threshold)
    cut = default_threshold(store.model_id) if threshold is None else float(threshold)
    start = time.perf_counter()
    ids, vectors, paths, shas = store.vectors()
    report = DedupReport(cut, len(ids))
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
        if len(names) > 1:
            report.groups.append(_ranked("exact", [looks.member(p, 1.0, shas[row]) for p in names]))
    if not exact_only and len(ids) > 1:
        first = [paths.get(int(i), [""])[0] for i in ids.tolist()]
        pairs = _pairs(vectors, cut)
        if verify:
            pairs = [(a, b) for a, b in pairs if looks.same_picture(first[a], first[b], layout_cut)]
        neighbours: dict[int, set[int]] = {}
        for a, b in pairs:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
        for component in _components(pairs):
            # Grown from the image most others match, and only what matches it directly: a chain of pairs
            # (a~b, b~c) is not a group. The one to keep is then chosen inside the group.
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
    report.groups.sort(key=lambda g: (g.kind != "exact", -len(g.others), g.keep.path))
    report.seconds = time.perf_counter() - start
    return report


class _Looks:
    """Each grouped file read once: its pixel size, sharpness and grey layouts (None when it cannot be read)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, int, float, np.ndarray, np.ndarray] | None] = {}

    def of(self, path: str) -> tuple[int, int, float, np.ndarray, np.ndarray] | None:
        if path not in self.seen:
            self.seen[path] = _look(path)
        return self.seen[path]

    def member(self, path: str, similarity: float, sha: str) -> GroupMember:
        found = self.of(path)
        if found is None:  # a file gone or unreadable since it was stored: listed, never the one to keep
            return GroupMember(path, similarity, sha, readable=False)
        return GroupMember(path, similarity, sha, found[0], found[1], found[2])

    def same_picture(self, a: str, b: str, cut: float) -> bool:
        first, second = self.of(a), self.of(b)
        if first is None or second is None:
            return False
        x, y = first[3], second[3]
        whole = max(float((x[:-1] @ y[0]).max()), float((y[:-1] @ x[0]).max()))  # one may be a crop of the other
        if max(whole, float(x[-1] @ y[-1])) < cut:  # or a turned copy: the middles match
            return False
        return float(first[4] @ second[4]) >= _COLOUR_CUT  # and the colours are where they were


def _look(path: str) -> tuple[int, int, float, np.ndarray, np.ndarray] | None:
    import io

    from PIL import Image

    from .errors import ImageError
    from .images import load_image, read_image_file

    try:
        data = read_image_file(path)[0]  # read once: for the header's size and for the pixels
        image = load_image(data, draft=(256, 256), name=path)
    except (ImageError, OSError, ValueError):
        return None
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size  # the file's own size (a JPEG decodes at a reduced scale here)
    except Exception:  # RAW, HEIC without the plugin registered, ...: the decoded size
        width, height = image.size
    grey = image.convert("L")
    grey.thumbnail((256, 256))
    return width, height, _sharpness(grey), _layouts(grey), _colours(image)


def _layouts(grey: Any) -> np.ndarray:
    """(11, 1024): the whole picture, nine 90% crops and the middle 80%, each 32 x 32, zero mean, unit norm."""
    from PIL import Image

    w, h = grey.size
    boxes = [(0, 0, w, h)] + [(int(w * fx), int(h * fy), int(w * fx) + int(w * 0.9), int(h * fy) + int(h * 0.9))
                              for fx in (0, 0.05, 0.1) for fy in (0, 0.05, 0.1)]  # fmt: skip
    boxes.append((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))  # the middle: free of a turn's corners
    out = np.empty((len(boxes), _SIDE * _SIDE), np.float32)
    for k, box in enumerate(boxes):
        a = np.asarray(grey.crop(box).resize((_SIDE, _SIDE), Image.Resampling.BOX), np.float32).ravel()
        a -= a.mean()
        out[k] = a / (np.linalg.norm(a) or 1.0)
    return out


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


def _components(pairs: list[tuple[int, int]]) -> list[set[int]]:
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, set[int]] = {}
    for x in parent:
        groups.setdefault(root(x), set()).add(x)
    return list(groups.values())


def _colours(image: Any) -> np.ndarray:
    """The middle 80%'s chroma (Cb, Cr about their neutral point) at 6 x 6, unit norm: where which colour is,
    whatever the brightness (a grey layout alone takes an orange square for a blue one)."""
    from PIL import Image

    w, h = image.size
    middle = image.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))
    middle = middle.resize((_COLOUR_SIDE, _COLOUR_SIDE), Image.Resampling.BOX)
    chroma = np.asarray(middle.convert("YCbCr"), np.float32)[..., 1:].ravel() - 128.0
    return chroma / (np.linalg.norm(chroma) or 1.0)


def _sharpness(grey: Any) -> float:
    """Variance of the Laplacian of the grey image at a common scale (higher: sharper)."""
    a = np.asarray(grey, dtype=np.float32)
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    laplacian = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1]
    return float(laplacian.var())


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
        writer.writerow(["group", "kind", "keep", "path", "is_keep", "similarity", "width", "height", "sharpness",
                         "sha256"])  # fmt: skip
        for number, group in enumerate(report.groups, 1):
            for m in group.members:
                writer.writerow([number, group.kind, csv_cell(group.keep.path), csv_cell(m.path), m is group.keep,
                                 f"{m.similarity:.4f}",
                                 m.width, m.height, f"{m.sharpness:.2f}", m.sha256])  # fmt: skip
        text = buffer.getvalue()
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return target
