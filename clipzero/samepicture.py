"""Whether two image files are the same picture, and how one was made from the other.

Dedup finds candidate pairs by their vectors; this module decides each pair on its pixels, in three steps:

1. **screen** (vectorised, for every candidate pair): the old pixel layouts (32 x 32 grey, zero mean, the best over
   small crops) and the colour layout must be loosely alike. Edited copies pass; most merely similar pictures stop.
2. **align**: a transform that maps one picture onto the other, from whichever of these fits: the frames themselves
   (a resized or re-encoded copy), ORB features matched with a ratio test and a similarity transform fitted by RANSAC
   (OpenCV's ``estimateAffinePartial2D``), or a normalised-correlation placement of one picture inside the other (for
   pictures with too few features); each refined by ECC. Only similarity transforms count (scale, turn, shift, no
   shear), and the copy must lie inside the kept picture's frame (a moved object is not a crop; a picture that shows
   more than the kept one is not its copy).
3. **compare**: with the transform applied, one gain for every channel and an offset per colour channel are fitted
   (a brightness, contrast or colour-cast edit, clipping at white allowed), trimmed so that a changed region is not
   fitted away; then every pixel's difference beyond a one-pixel slip is measured in brightness and, more coarsely,
   in colour (JPEG keeps colour at half resolution). Changed regions of more than a few pixels, summed, must stay
   under :data:`CHANGE_CUT` of the compared area: a recoloured, moved or reshaped object fails; compression does not.

The transform and the fit name the kind of copy (:data:`KINDS`). Needs OpenCV (``pip install 'clipzero[dedup]'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CHANGE_CUT", "KINDS", "Match", "Picture", "compare", "picture", "screen"]

#: Every kind of copy a match may name; a copy can be several (a crop that was also resized).
KINDS = ("exact", "resized", "re-encoded", "cropped", "turned", "edited")

#: The share of the compared area that may differ (summed changed regions of at least :data:`_MIN_REGION` pixels at
#: the working size), measured with benchmarks/dedup.py: edited copies stay under 0.001, changed scenes above 0.007.
CHANGE_CUT = 0.003

#: The long side at which pictures are aligned and compared.
WORK_SIDE = 256

_CHANGE_LEVEL = 30.0  # a pixel differs when it is this far (0-255) from the other's 3 x 3 neighbourhood
_MIN_REGION = 6  # pixels: smaller specks are compression noise
_MIN_INLIERS = 8
_TURN = math.radians(0.5)  # the smallest turn named as one
_OUTSIDE = 0.02  # of the copy's frame outside the kept one (beyond a turn's corners): a copy shows nothing new
_MIN_KEPT = 0.5  # of the kept picture's area that a crop still shows
_SCREEN_LAYOUT, _SCREEN_COLOUR = 0.75, 0.4  # step 1: measured, every edited copy above both
_SIDE, _COLOUR_SIDE = 32, 6
_COARSE, _COARSE_CUT = 4, 0.08  # the coarse check's size divisor and the changed share that ends a hypothesis


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
    colours: np.ndarray  # (108,): the screen's colour layout
    _features: tuple[np.ndarray, Any] | None = None
    _small: np.ndarray | None = None
    _half: np.ndarray | None = None

    def small(self) -> np.ndarray:
        """The pixels at a quarter of the working size (float32), for the coarse check."""
        if self._small is None:
            import cv2

            h, w = self.grey.shape
            size = (max(1, w // _COARSE), max(1, h // _COARSE))
            self._small = cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return self._small

    def half(self) -> np.ndarray:
        """The grey at half the working size (float32), for ECC."""
        if self._half is None:
            import cv2

            h, w = self.grey.shape
            size = (max(1, w // 2), max(1, h // 2))
            self._half = cv2.resize(self.grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return self._half

    def features(self) -> tuple[np.ndarray, Any]:
        if self._features is None:
            import cv2

            detector = cv2.ORB_create(nfeatures=800, fastThreshold=8, edgeThreshold=11, patchSize=11)  # type: ignore[attr-defined]
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
    from PIL import Image

    rgb = image.convert("RGB")
    k = WORK_SIDE / max(rgb.size)
    size = (max(1, round(rgb.width * k)), max(1, round(rgb.height * k)))
    rgb = rgb.resize(size, Image.Resampling.BOX if k < 1 else Image.Resampling.BILINEAR)
    grey = rgb.convert("L")
    return Picture(width, height, np.asarray(rgb), np.asarray(grey), _sharpness(grey), _layouts(grey), _colours(rgb))


def screen(a: Picture, b: Picture) -> bool:
    """Step 1: loosely alike in grey layout (one may be a small crop of the other, or turned) and in colour."""
    x, y = a.layouts, b.layouts
    layout = max(float((x[:-1] @ y[0]).max()), float((y[:-1] @ x[0]).max()), float(x[-1] @ y[-1]))
    return layout >= _SCREEN_LAYOUT and float(a.colours @ b.colours) >= _SCREEN_COLOUR


def compare(keep: Picture, other: Picture) -> Match | None:
    """Steps 2 and 3: the match of ``other`` to ``keep``, or None when they are not the same picture."""
    import cv2

    tried: list[np.ndarray] = []
    rough: list[np.ndarray] = []

    def attempt(transform: np.ndarray | None, refine: bool, close: bool | None = None,
                ) -> tuple[Match, np.ndarray] | None:  # fmt: skip
        if transform is None or any(np.abs(transform - t).max() < 0.25 for t in rough):
            return None
        rough.append(transform)
        if not (close if close is not None else _coarse_change(keep, other, transform) <= _COARSE_CUT):
            return None  # not even roughly the same: no refining
        candidates = [transform]
        if refine:
            refined = _refine(keep, other, transform)
            if refined is not None:
                candidates.insert(0, refined)
        for m in candidates:
            if any(np.abs(m - t).max() < 0.25 for t in tried) or not _similarity(m):
                continue
            tried.append(m)
            found = _check(keep, other, m)
            if found is not None:
                return found, m
        return None

    frame = _frame(keep, other)
    frame_close = frame is not None and _coarse_change(keep, other, frame) <= _COARSE_CUT
    found = attempt(frame, False, frame_close) or attempt(_by_features(keep, other, cv2), True)
    for placed in [] if found else _placements(keep, other, cv2):
        found = attempt(placed, True)
        if found:
            break
    if found is None and frame is not None and frame_close:
        refined = _refine(keep, other, frame)  # a small turn with too few features: the frame, refined
        if refined is not None and _similarity(refined) and (match := _check(keep, other, refined)) is not None:
            found = (match, refined)
    if found is None:
        return None
    match, m = found
    if frame is not None and m is frame:  # the frames alone: refined for the kinds (a small turn passes as none)
        refined = _refine(keep, other, m)
        if refined is not None and abs(math.atan2(float(refined[1, 0]), float(refined[0, 0]))) >= _TURN and \
                _similarity(refined):  # fmt: skip
            return _check(keep, other, refined) or match
    return match


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


def _refine(a: Picture, b: Picture, m: np.ndarray) -> np.ndarray | None:
    """ECC from ``m`` (b -> a), at half the working size: the affine that best lines b's grey up with a's."""
    import cv2

    half = np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]], np.float32)
    start = half @ np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(half)
    warp = np.asarray(cv2.invertAffineTransform(start[:2].astype(np.float32)), np.float32)  # a -> b, as ECC wants
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    try:
        _, warp = cv2.findTransformECC(a.half(), b.half(), warp, cv2.MOTION_AFFINE, criteria, None, 3)
    except cv2.error:  # did not converge: the hypothesis stands as it was
        return None
    found = np.linalg.inv(half) @ np.vstack([cv2.invertAffineTransform(warp), [0, 0, 1]]) @ half
    return np.asarray(found[:2], np.float32)


def _similarity(m: np.ndarray, tolerance: float = 0.03) -> bool:
    """A scale, a turn and a shift (what copying does), not a shear or a stretch."""
    s = math.sqrt(abs(float(np.linalg.det(m[:, :2])))) or 1e-9
    return abs(m[0, 0] - m[1, 1]) <= tolerance * s and abs(m[0, 1] + m[1, 0]) <= tolerance * s


def _check(a: Picture, b: Picture, m: np.ndarray) -> Match | None:
    """Step 3 under the transform ``m`` (b -> a), with the frames' overlap first."""
    import cv2

    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float32) @ m[:, :2].T + m[:, 2]
    frame = np.array([[0, 0], [wa, 0], [wa, ha], [0, ha]], np.float32)
    shared, _ = cv2.intersectConvexConvex(corners.astype(np.float32), frame)
    mapped = abs(cv2.contourArea(corners.astype(np.float32)))
    kept = shared / (wa * ha)
    turn = abs(math.tan(math.atan2(float(m[1, 0]), float(m[0, 0]))))
    outside = 1 - shared / max(mapped, 1e-9)  # a turned copy's corners leave the frame: half the turn's tangent
    if outside > 0.5 * turn + _OUTSIDE or kept < _MIN_KEPT:  # the copy inside the kept frame, and enough of it
        return None
    if kept < 0.97 and math.sqrt(abs(float(np.linalg.det(m[:, :2])))) * a.width / wa * wb / b.width < 0.95:
        return None  # an enlarged crop: any picture of one plain shape is one of any other
    warped = cv2.warpAffine(b.rgb.astype(np.float32), m, (wa, ha), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((hb, wb), np.uint8), m, (wa, ha), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((7, 7), np.uint8)) > 0
    if inside.sum() < 0.3 * inside.size:
        return None
    mine = a.rgb.astype(np.float32)
    best: tuple[float, float, np.ndarray] | None = None
    for x, y in ((warped, mine), (mine, warped)):  # fitted either way: the brighter copy may be clipped at white
        gain, offset = _fit(x, y, inside)
        change = _change(y, np.clip(gain * x + offset, 0, 255), inside, cv2)
        if best is None or change < best[0]:
            best = (change, gain if x is warped else 1 / gain, offset if x is warped else -offset / gain)
        if change < CHANGE_CUT:
            break
    assert best is not None
    change, gain, offset = best
    if change >= CHANGE_CUT:
        return None
    linear = m[:, :2] * a.width / max(wa, 1) * wb / max(b.width, 1)  # in the files' own pixels
    scale = math.sqrt(abs(float(np.linalg.det(linear))))
    angle = math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0])))
    sample = warped[::3, ::3][inside[::3, ::3]]
    shift = float(_most(np.abs((gain - 1) * sample + offset)).mean()) if len(sample) else 0.0  # levels, 0-255
    kinds = [k for k, on in (("resized", abs(scale - 1) > 0.03), ("cropped", kept < 0.97),
                             ("turned", abs(math.radians(angle)) >= _TURN), ("edited", shift > 6)) if on]  # fmt: skip
    return Match(tuple(kinds) or ("re-encoded",), float(kept), angle, scale, change)


def _coarse_change(a: Picture, b: Picture, m: np.ndarray) -> float:
    """The changed share at a quarter of the working size, where a rough transform lines things up well enough."""
    import cv2

    quarter = np.array([[1 / _COARSE, 0, 0], [0, 1 / _COARSE, 0], [0, 0, 1]], np.float32)
    coarse = (quarter @ np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(quarter))[:2].astype(np.float32)
    mine, theirs = a.small(), b.small()
    size = (mine.shape[1], mine.shape[0])
    warped = cv2.warpAffine(theirs, coarse, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(theirs.shape[:2], np.uint8), coarse, size, flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    if inside.sum() < 0.3 * inside.size:
        return 1.0
    gain, offset = _fit(warped, mine, inside, step=1, rounds=1)  # untrimmed: a gate may only err towards "differ"
    return _change(mine, np.clip(gain * warped + offset, 0, 255), inside, cv2, blur=0.5, smallest=2)


def _fit(x: np.ndarray, y: np.ndarray, inside: np.ndarray, step: int = 3, rounds: int = 3,
         ) -> tuple[float, np.ndarray]:  # fmt: skip
    """y ~ g x + o_c: one gain for every channel and an offset per channel, fitted where y is not clipped, three
    times, each time without the worst-fitting fifth (a changed object is not an edit)."""
    x, y, inside = x[::step, ::step], y[::step, ::step], inside[::step, ::step]  # a ninth of the pixels fits as well
    usable = inside & (_most(y) < 252) & (-_most(-y) > 3)
    xs, ys = x[usable], y[usable]
    gain, offset = 1.0, np.zeros(3, np.float32)
    for _ in range(rounds):
        if len(xs) < 50:
            break
        xc, yc = xs - xs.mean(0), ys - ys.mean(0)
        spread = float((xc * xc).sum())
        if spread > 1:
            gain = min(max(float((xc * yc).sum()) / spread, 0.7), 1.5)
        if rounds == 1:  # untrimmed: the mean will do
            offset = (ys.mean(0) - gain * xs.mean(0)).astype(np.float32)
            break
        offset = np.median(ys - gain * xs, axis=0).astype(np.float32)
        error = _most(np.abs(ys - gain * xs - offset))
        keep = error <= np.quantile(error, 0.8)
        xs, ys = xs[keep], ys[keep]
    return gain, offset


def _change(y: np.ndarray, fitted: np.ndarray, inside: np.ndarray, cv2: Any, blur: float = 1.0,
            smallest: int = _MIN_REGION) -> float:  # fmt: skip
    """The share of ``inside`` covered by changed regions: brightness at a 1-pixel blur, colour at 2."""
    first = cv2.cvtColor(y.astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    second = cv2.cvtColor(fitted.astype(np.uint8), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    bright = [cv2.GaussianBlur(np.ascontiguousarray(c[..., 0]), (0, 0), blur) for c in (first, second)]
    colour = [cv2.GaussianBlur(c, (0, 0), 2 * blur) for c in (first, second)]  # its brightness channel unused
    diff = np.maximum(_beyond_slip(bright[0], bright[1], cv2), _beyond_slip(bright[1], bright[0], cv2))
    colours = np.maximum(_beyond_slip(colour[0], colour[1], cv2), _beyond_slip(colour[1], colour[0], cv2))
    diff = np.maximum(diff, 1.5 * np.maximum(colours[..., 1], colours[..., 2]))
    changed = ((diff > _CHANGE_LEVEL) & inside).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(changed)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas[areas >= smallest].sum()) / float(inside.sum())


def _most(a: np.ndarray) -> np.ndarray:
    """The largest value over the last (colour) axis: numpy's reduction over an axis of three is slow."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])


def _beyond_slip(y: np.ndarray, x: np.ndarray, cv2: Any) -> np.ndarray:
    """How far each pixel of y is outside the range of x's 3 x 3 neighbourhood (a one-pixel slip costs nothing)."""
    kernel = np.ones((3, 3), np.uint8)
    return np.maximum(np.maximum(y - cv2.dilate(x, kernel), cv2.erode(x, kernel) - y), 0)


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


def _colours(image: Any) -> np.ndarray:
    """The middle 80%'s chroma (Cb, Cr about their neutral point) at 6 x 6, unit norm."""
    from PIL import Image

    w, h = image.size
    middle = image.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))
    middle = middle.resize((_COLOUR_SIDE, _COLOUR_SIDE), Image.Resampling.BOX)
    chroma = np.asarray(middle.convert("YCbCr"), np.float32)[..., 1:].ravel() - 128.0
    return chroma / (np.linalg.norm(chroma) or 1.0)


def _sharpness(grey: Any) -> float:
    """Variance of the Laplacian over the variance of the grey, in the middle 80% of the picture at the working size
    (higher: sharper). Relative to contrast, so a brightened copy is not sharper than its original; the middle, so a
    turned copy's filled corners add nothing."""
    a = np.asarray(grey, dtype=np.float32)
    h, w = a.shape
    a = a[h // 10 : h - h // 10, w // 10 : w - w // 10]
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    laplacian = a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] - 4 * a[1:-1, 1:-1]
    return float(laplacian.var() / (a.var() + 1.0))
