"""The first step of telling whether two pictures are the same: a screen over every candidate pair, on small grey
and colour layouts kept for each picture, so that only loosely alike pairs reach the pixel check
(:mod:`clipzero.samepicture`).

A pair passes when the grey layouts agree (the whole of one against the best of nine 90% crops of the other, either
way, or the two middles: one may be a small crop of the other, or turned) and so do the colour layouts. The cuts are
measured with ``benchmarks/dedup.py``: every resized, re-encoded, cropped and turned copy there is above both, and
all but two of 810 brightened ones (clipped at white); most merely similar pictures are below.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["COLOUR_CUT", "COLOUR_SIZE", "LAYOUT_CUT", "LAYOUT_SHAPE", "alike", "colour_layout", "grey_layouts"]

#: The cosine of zero-mean 32 x 32 grey layouts a copy reaches.
LAYOUT_CUT = 0.8

#: The cosine of 6 x 6 chroma layouts a copy reaches.
COLOUR_CUT = 0.5

_SIDE, _COLOUR_SIDE = 32, 6

#: The shapes of a picture's :func:`grey_layouts` and :func:`colour_layout`.
LAYOUT_SHAPE = (11, _SIDE * _SIDE)
COLOUR_SIZE = 2 * _COLOUR_SIDE * _COLOUR_SIDE


def grey_layouts(grey: np.ndarray) -> np.ndarray:
    """(11, 1024) of a uint8 grey picture: the whole, nine 90% crops and the middle 80%, each as 32 x 32 cell means
    (from one integral image), zero mean, unit norm."""
    import cv2

    h, w = grey.shape
    boxes = [(0, 0, w, h)] + [(int(w * fx), int(h * fy), int(w * fx) + int(w * 0.9), int(h * fy) + int(h * 0.9))
                              for fx in (0, 0.05, 0.1) for fy in (0, 0.05, 0.1)]  # fmt: skip
    boxes.append((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))  # the middle: free of a turn's corners
    box = np.array(boxes, np.float64)[:, :, None]
    steps = np.arange(_SIDE + 1) / _SIDE
    xs = np.rint(box[:, 0] + (box[:, 2] - box[:, 0]) * steps).astype(np.intp)  # (11, 33): the cells' edges
    ys = np.rint(box[:, 1] + (box[:, 3] - box[:, 1]) * steps).astype(np.intp)
    if (np.diff(xs) == 0).any() or (np.diff(ys) == 0).any():  # a side under 32 pixels: resized up instead
        out = np.stack([cv2.resize(grey[y0:y1, x0:x1], (_SIDE, _SIDE), interpolation=cv2.INTER_LINEAR).ravel()
                        for x0, y0, x1, y1 in boxes]).astype(np.float32)  # fmt: skip
    else:
        total = cv2.integral(grey, sdepth=cv2.CV_64F)
        corners = total[ys[:, :, None], xs[:, None, :]]  # (11, 33, 33): sums up to each cell corner
        sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
        areas = np.diff(ys)[:, :, None] * np.diff(xs)[:, None, :]
        out = (sums / areas).reshape(len(boxes), -1).astype(np.float32)
    out -= out.mean(1, keepdims=True)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def colour_layout(rgb: np.ndarray) -> np.ndarray:
    """(72,) of a uint8 RGB picture: the middle 80%'s chroma (Cr, Cb about their neutral point) at 6 x 6, unit
    norm."""
    import cv2

    h, w = rgb.shape[:2]
    top, left = int(h * 0.1), int(w * 0.1)
    middle = rgb[top : max(int(h * 0.9), top + 1), left : max(int(w * 0.9), left + 1)]
    middle = cv2.resize(middle, (_COLOUR_SIDE, _COLOUR_SIDE), interpolation=cv2.INTER_AREA)
    chroma = cv2.cvtColor(middle, cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32).ravel() - 128.0
    return chroma / (np.linalg.norm(chroma) or 1.0)


def alike(layouts: Mapping[int, np.ndarray], colours: Mapping[int, np.ndarray],
          pairs: list[tuple[int, int]]) -> np.ndarray:  # fmt: skip
    """Whether each pair passes the screen (bool per pair), from each row's :func:`grey_layouts` and
    :func:`colour_layout`. Computed a row at a time against all its partners (one small matrix product each)."""
    if not pairs:
        return np.zeros(0, bool)
    rows = sorted({r for pair in pairs for r in pair})
    at = {r: i for i, r in enumerate(rows)}
    wholes = np.stack([layouts[r][0] for r in rows])
    middles = np.stack([layouts[r][-1] for r in rows])
    chroma = np.stack([colours[r] for r in rows])
    ends = np.array([[at[a], at[b]] for a, b in pairs], np.intp)
    crops = np.empty(len(pairs), np.float32)  # the best crop of either against the whole of the other
    middle = np.empty(len(pairs), np.float32)
    colour = np.empty(len(pairs), np.float32)
    for i, j in ((0, 1), (1, 0)):  # the first's crops against the second's whole, then the other way round
        order = np.argsort(ends[:, i], kind="stable")
        starts = np.searchsorted(ends[order, i], np.arange(len(rows) + 1))
        for row in range(len(rows)):
            mine = order[starts[row] : starts[row + 1]]
            if not len(mine):
                continue
            theirs = ends[mine, j]
            best = (layouts[rows[row]][:-1] @ wholes[theirs].T).max(0)
            if i == 0:
                crops[mine] = best
                middle[mine] = middles[theirs] @ middles[row]
                colour[mine] = chroma[theirs] @ chroma[row]
            else:
                crops[mine] = np.maximum(crops[mine], best)
    return (np.maximum(crops, middle) >= LAYOUT_CUT) & (colour >= COLOUR_CUT)
