"""Whether two image files are the same picture, and how one was made from the other.

Dedup finds candidate pairs by their vectors; this module decides each pair on its pixels, in three steps:

1. **screen** (:mod:`clipzero.samescreen`, for every candidate pair at once): small grey and colour layouts must be
   loosely alike. Edited copies pass; most merely similar pictures stop.
2. **align**: a transform that maps one picture onto the other, from whichever of these fits first: the frames
   themselves (a resized or re-encoded copy), ORB features matched with a ratio test and a similarity transform
   fitted by RANSAC (OpenCV's ``estimateAffinePartial2D``), or, for pictures with too few features to go by, a
   normalised-correlation placement of one picture inside the other; each roughly checked at a quarter of the size,
   then checked as it is when it lines up already, else refined by ECC first. Only similarity transforms count
   (scale, turn, shift, no shear), and the copy must lie inside the kept picture's frame (a moved object is not a
   crop; a picture that shows more than the kept one is not its copy).
3. **compare** (:mod:`clipzero.samepixels`): with the transform applied, a brightness and colour fit, then the
   share of the picture that still differs beyond a one-pixel slip, in changed regions of more than a few pixels,
   must stay under :data:`CHANGE_CUT` of the compared area: a recoloured, moved or reshaped object fails;
   compression does not. When most of the picture lines up under a refined transform and the rest differs, the
   answer is final (:func:`decide` says so, and dedup need not compare that changed scene with the other copies of
   its source).

The transform names the kind of copy (:data:`KINDS`): resized, cropped (the kept area), turned (a match found as it
stood is refined to name a turn right); and the typical pixel's change names an edit. Needs OpenCV
(``pip install 'clipzero[dedup]'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .samepixels import CHANGE_CUT, apply_fit, changed_share, fit
from .samescreen import colour_layout, grey_layouts

__all__ = ["CHANGE_CUT", "KINDS", "Match", "Picture", "decide", "picture"]

#: Every kind of copy a match may name; a copy can be several (a crop that was also resized).
KINDS = ("exact", "resized", "re-encoded", "cropped", "turned", "edited")

#: The long side at which pictures are aligned and compared.
WORK_SIDE = 256

_MIN_INLIERS = 8
_TURN = math.radians(0.5)  # the smallest turn named as one
_OUTSIDE = 0.02  # of the copy's frame outside the kept one (beyond a turn's corners): a copy shows nothing new
_MIN_KEPT = 0.5  # of the kept picture's area that a crop still shows
_COARSE, _COARSE_CUT = 4, 0.08  # the coarse check's size divisor and the changed share that ends a hypothesis
_LINED_UP = 0.02  # at most this changed share in the coarse check: checked as it is before refining (measured: 99.5%
# of the hypotheses that pass as they are, and a third of those that fail, are under it)
_ECC = 2  # ECC works at half the working size
_ALIGNED = 0.25  # at most this share changed under a refined transform: the pictures line up, and they differ
_PLAIN = 150  # features: a picture with fewer is also placed by correlation
_EDITED = 10  # levels (0-255) the median pixel moves in its most changed channel in an edited copy (measured: at
# most 6 for resized, re-encoded, cropped and turned copies, at least 14 for 20% brighter ones)


@dataclass
class Picture:
    """What the check keeps of one file: its size, its pixels at the working size, and its features (found on first
    use)."""

    width: int
    height: int
    rgb: np.ndarray  # uint8 (h, w, 3) at the working size
    grey: np.ndarray  # uint8 (h, w)
    sharpness: float
    layouts: np.ndarray  # (11, 1024): the screen's grey layouts
    colours: np.ndarray  # (72,): the screen's colour layout
    _features: tuple[np.ndarray, Any] | None = None
    _small: np.ndarray | None = None
    _half: np.ndarray | None = None
    _quarter: np.ndarray | None = None

    def small(self) -> np.ndarray:
        """The pixels at a quarter of the working size, for the coarse check."""
        if self._small is None:
            import cv2

            h, w = self.grey.shape
            size = (max(1, w // _COARSE), max(1, h // _COARSE))
            self._small = cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA)
        return self._small

    def half(self) -> np.ndarray:
        """The grey at half the working size (float32), for ECC."""
        if self._half is None:
            import cv2

            h, w = self.grey.shape
            size = (max(1, w // _ECC), max(1, h // _ECC))
            self._half = cv2.resize(self.grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return self._half

    def quarter(self) -> np.ndarray:
        """The grey at a quarter of the working size (float32), for a quick ECC."""
        if self._quarter is None:
            import cv2

            self._quarter = cv2.cvtColor(self.small(), cv2.COLOR_RGB2GRAY).astype(np.float32)
        return self._quarter

    def features(self) -> tuple[np.ndarray, Any]:
        if self._features is None:
            import cv2

            detector = cv2.ORB_create(nfeatures=500, fastThreshold=8, edgeThreshold=11, patchSize=11)  # type: ignore[attr-defined]
            points, descriptors = detector.detectAndCompute(self.grey, None)
            self._features = (np.array([p.pt for p in points], np.float32).reshape(-1, 2), descriptors)
        return self._features


@dataclass(frozen=True)
class Match:
    """How ``other`` relates to ``keep``: the kinds of copy, the share of the kept picture it shows, its turn in
    degrees, its scale in pixels, and the changed share of the compared area."""

    kinds: tuple[str, ...]
    kept_area: float = 1.0
    angle: float = 0.0
    scale: float = 1.0
    change: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "kept_area": round(self.kept_area, 3), "angle": round(self.angle, 2),
                "scale": round(self.scale, 3), "change": round(self.change, 5)}  # fmt: skip


def picture(image: Any, width: int, height: int) -> Picture:
    """A :class:`Picture` of a decoded PIL image whose file is ``width`` x ``height``."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    k = WORK_SIDE / max(w, h)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return Picture(width, height, rgb, grey, _sharpness(grey), grey_layouts(grey), colour_layout(rgb))


def decide(keep: Picture, other: Picture) -> Match | bool:
    """Steps 2 and 3 with the reason for a no: the match of ``other`` to ``keep``; True when the two line up and
    differ (a changed scene: it differs from every copy of either too); False when no alignment was found."""
    import cv2

    tried: list[np.ndarray] = []  # every hypothesis and refined transform
    checked: list[tuple[np.ndarray, float]] = []  # the transforms checked at the working size, with their change

    def attempt(transform: np.ndarray | None) -> Match | bool:
        """A hypothesis checked as it is when it lines up already, else (or when that fails) refined and checked:
        its match, True when the pictures line up and differ (no other hypothesis can help), else False."""
        if transform is None or any(np.abs(transform - t).max() < 0.25 for t in tried):
            return False
        tried.append(transform)
        rough = _coarse_change(keep, other, transform)
        if rough > _COARSE_CUT:
            return False  # not even roughly the same: no refining
        plain: Match | None = None
        if rough <= _LINED_UP and _similarity(transform):  # a frame or a fitted similarity is often exact already
            plain, change = _check(keep, other, transform)
            if plain is None:
                checked.append((transform, change))
        if plain is not None:
            return _turn_named(keep, other, transform, plain)
        refined = _refine(keep, other, transform)
        if refined is None or not _similarity(refined):
            return False
        for t, change in checked:
            if np.abs(refined - t).max() < 0.25:  # checked already: the refining confirms it or leads back
                return t is transform and change < _ALIGNED
        if any(np.abs(refined - t).max() < 0.25 for t in tried if t is not transform):
            return False
        tried.append(refined)
        match, change = _check(keep, other, refined)
        checked.append((refined, change))
        return match if match is not None else change < _ALIGNED

    frame = _frame(keep, other)
    found = attempt(frame)
    if found is False:
        found = attempt(_by_features(keep, other, cv2))
    if found is False and min(len(keep.features()[0]), len(other.features()[0])) < _PLAIN:
        for placed in _placements(keep, other, cv2):  # too few features to go by: placed by correlation
            found = attempt(placed)
            if found is not False:
                break
    return found


def _turn_named(keep: Picture, other: Picture, transform: np.ndarray, plain: Match) -> Match:
    """A match found as the hypothesis stood, with its turn named right: a slight turn that a frame hides (on a
    smooth picture it passes as it is), or the stray half degree of RANSAC. A quick ECC at a quarter of the size says
    whether refining would change the turn; only then is the pair refined and checked again."""
    probe = _refine(keep, other, transform, quick=True)
    if probe is None or not _similarity(probe) or _turn(probe) == _turn(transform):
        return plain
    refined = _refine(keep, other, transform)
    if refined is None or not _similarity(refined) or _turn(refined) == _turn(transform):
        return plain
    named = _check(keep, other, refined)[0]  # ECC drifts a little on a round object: a turn under 1 degree counts
    if named is None or (_turn(refined) and abs(named.angle) < 1 and 1.5 * named.change + 1e-4 >= plain.change):
        return plain  # only if it explains the pixels better than the plain hypothesis
    return named


def _frame(a: Picture, b: Picture) -> np.ndarray | None:
    """b's frame stretched onto a's (a resized or re-encoded copy): when the aspect ratios agree."""
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    if abs(wa / ha - wb / hb) > 0.02 * wa / ha:
        return None
    return np.array([[wa / wb, 0, 0], [0, ha / hb, 0]], np.float32)


def _by_features(a: Picture, b: Picture, cv2: Any) -> np.ndarray | None:
    (pa, da), (pb, db) = a.features(), b.features()
    if da is None or db is None or len(pa) < 4 or len(pb) < 4:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < _MIN_INLIERS:
        return None
    source = pb[[g.queryIdx for g in good]]
    target = pa[[g.trainIdx for g in good]]
    m, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                             maxIters=2000, confidence=0.995)  # fmt: skip
    if m is None or inliers is None or int(inliers.sum()) < _MIN_INLIERS:
        return None
    return np.asarray(m, np.float32)


def _placements(a: Picture, b: Picture, cv2: Any, side: int = 64) -> list[np.ndarray]:
    """b placed inside a, and a inside b, by normalised correlation of small grey copies over a few scales (the same
    pixel scale first: a crop that was not resized)."""
    out = []
    for big, small, inverse in ((a, b, False), (b, a, True)):
        (hb, wb), (hs, ws) = big.grey.shape, small.grey.shape
        k = side / max(hb, wb)
        grey = cv2.resize(big.grey, (max(1, round(wb * k)), max(1, round(hb * k))), interpolation=cv2.INTER_AREA)
        shares = [0.95, 0.9, 0.85, 0.8]
        if small.width < big.width and small.width / big.width > _MIN_KEPT:
            shares.insert(0, small.width / big.width)
        best: tuple[float, int, int, int, int] | None = None
        for share in shares:
            tw = round(grey.shape[1] * share)
            th = round(tw * hs / ws)
            if not 8 <= tw <= grey.shape[1] or not 8 <= th <= grey.shape[0]:
                continue
            template = cv2.resize(small.grey, (tw, th), interpolation=cv2.INTER_AREA)
            _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(grey, template, cv2.TM_CCOEFF_NORMED))
            if best is None or score > best[0]:
                best = (score, x, y, tw, th)
        if best is None:
            continue
        _, x, y, tw, th = best
        m = np.array([[tw / k / ws, 0, x / k], [0, th / k / hs, y / k]], np.float32)  # small -> big
        out.append(np.asarray(cv2.invertAffineTransform(m), np.float32) if inverse else m)
    return out


def _refine(a: Picture, b: Picture, m: np.ndarray, quick: bool = False) -> np.ndarray | None:
    """ECC from ``m`` (b -> a), at half the working size (``quick``: a quarter, fewer steps): the affine that best
    lines b's grey up with a's."""
    import cv2

    divisor, mine, theirs = (_COARSE, a.quarter(), b.quarter()) if quick else (_ECC, a.half(), b.half())
    warp = cv2.invertAffineTransform(_rescaled(m, 1 / divisor))  # a -> b at that size, as ECC wants
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10 if quick else 15, 1e-3)
    try:
        _, warp = cv2.findTransformECC(mine, theirs, warp, cv2.MOTION_AFFINE, criteria, None, 3)
    except cv2.error:  # did not converge: the hypothesis stands as it was
        return None
    return _rescaled(cv2.invertAffineTransform(warp), divisor)


def _rescaled(m: np.ndarray, k: float) -> np.ndarray:
    """The transform ``m`` for both pictures scaled by ``k``: its turn and scale stay, its shift scales."""
    out = np.array(m, np.float32)
    out[:, 2] *= k
    return out


def _turn(m: np.ndarray) -> bool:
    """Whether the transform turns by at least :data:`_TURN`."""
    return abs(math.atan2(float(m[1, 0]), float(m[0, 0]))) >= _TURN


def _similarity(m: np.ndarray, tolerance: float = 0.03) -> bool:
    """A scale, a turn and a shift (what copying does), not a shear or a stretch."""
    s = math.sqrt(abs(float(np.linalg.det(m[:, :2])))) or 1e-9
    return abs(m[0, 0] - m[1, 1]) <= tolerance * s and abs(m[0, 1] + m[1, 0]) <= tolerance * s


def _check(a: Picture, b: Picture, m: np.ndarray) -> tuple[Match | None, float]:
    """Step 3 under the transform ``m`` (b -> a), with the frames' overlap first: the match or None, and the changed
    share (1.0 when the frames do not overlap as a copy's would)."""
    import cv2

    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float32) @ m[:, :2].T + m[:, 2]
    frame = np.array([[0, 0], [wa, 0], [wa, ha], [0, ha]], np.float32)
    shared, _ = cv2.intersectConvexConvex(corners.astype(np.float32), frame)
    mapped = abs(cv2.contourArea(corners.astype(np.float32)))
    kept = shared / (wa * ha)
    turn = abs(math.tan(math.remainder(math.atan2(float(m[1, 0]), float(m[0, 0])), math.pi / 2)))  # off a right angle
    outside = 1 - shared / max(mapped, 1e-9)  # a turned copy's corners leave the frame: half the turn's tangent
    if outside > 0.5 * turn + _OUTSIDE or kept < _MIN_KEPT:  # the copy inside the kept frame, and enough of it
        return None, 1.0
    if kept < 0.97 and math.sqrt(abs(float(np.linalg.det(m[:, :2])))) * a.width / wa * wb / b.width < 0.95:
        return None, 1.0  # an enlarged crop: any picture of one plain shape is one of any other
    warped = cv2.warpAffine(b.rgb, m, (wa, ha), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((hb, wb), np.uint8), m, (wa, ha), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0
    if cv2.countNonZero(inside.view(np.uint8)) < 0.3 * inside.size:
        return None, 1.0
    mine = a.rgb
    ways = [(warped, mine), (mine, warped)]  # fitted either way: the brighter copy may be clipped at white
    mask = inside.view(np.uint8)
    if sum(cv2.mean(warped, mask)[:3]) > sum(cv2.mean(mine, mask)[:3]):
        ways.reverse()  # the brighter one fitted first: its clipped pixels are left out of the fit
    first = fit(*ways[0], inside)
    if first is None:  # the brighter one is clipped (in some channel) nearly everywhere: the other way round first
        ways.reverse()
        first = fit(*ways[0], inside)
    change = 1.0
    for x, y in ways:
        fitted = first if x is ways[0][0] else fit(x, y, inside)
        change = min(change, changed_share(y, apply_fit(x, fitted, cv2), inside, cv2))
        if change < CHANGE_CUT:
            break
    if change >= CHANGE_CUT:
        return None, change
    linear = m[:, :2] * a.width / max(wa, 1) * wb / max(b.width, 1)  # in the files' own pixels
    scale = math.sqrt(abs(float(np.linalg.det(linear))))
    angle = math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0])))
    pick = inside[::3, ::3]  # the edit: the typical pixel's change in its most changed channel (0-255)
    moved = np.abs(warped[::3, ::3][pick].astype(np.int16) - mine[::3, ::3][pick].astype(np.int16)).max(axis=1)
    edit = float(np.median(moved)) if len(moved) else 0.0
    kinds = [k for k, on in (("resized", abs(scale - 1) > 0.03), ("cropped", kept < 0.97),
                             ("turned", _turn(m)), ("edited", edit > _EDITED)) if on]  # fmt: skip
    return Match(tuple(kinds) or ("re-encoded",), float(kept), angle, scale, change), change


def _coarse_change(a: Picture, b: Picture, m: np.ndarray) -> float:
    """The changed share at a quarter of the working size, where a rough transform lines things up well enough."""
    import cv2

    coarse = _rescaled(m, 1 / _COARSE)
    mine, theirs = a.small(), b.small()
    size = (mine.shape[1], mine.shape[0])
    warped = cv2.warpAffine(theirs, coarse, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(theirs.shape[:2], np.uint8), coarse, size, flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    if inside.sum() < 0.3 * inside.size:
        return 1.0
    fitted = fit(warped, mine, inside, step=2, rounds=1)  # untrimmed: a gate may only err towards "differ"
    return changed_share(mine, apply_fit(warped, fitted, cv2), inside, cv2, blur=0.5, smallest=2)


def _sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian over the variance of the grey, in the middle 80% of the picture at the working size
    (higher: sharper). Relative to contrast, so a brightened copy is not sharper than its original; the middle, so a
    turned copy's filled corners add nothing."""
    import cv2

    h, w = grey.shape
    a = grey[h // 10 : h - h // 10, w // 10 : w - w // 10]
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    laplacian = cv2.Laplacian(a, cv2.CV_32F, ksize=1)[1:-1, 1:-1]
    spread = float(cv2.meanStdDev(laplacian)[1][0, 0]) ** 2
    return spread / (float(cv2.meanStdDev(a)[1][0, 0]) ** 2 + 1.0)
