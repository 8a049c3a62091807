"""The pixel comparison of two aligned pictures: a brightness and colour fit, and the share of the picture that
still differs after it (:mod:`clipzero.samepicture` aligns them first).

One gain for every channel and an offset per colour channel are fitted (a brightness, contrast or colour-cast edit),
where the fitted-to picture is not clipped, and trimmed so that a changed object is not fitted away. Then every
pixel's difference beyond a one-pixel slip is measured in brightness and, at half the size, in colour (JPEG keeps
colour at half resolution); changed regions of more than a few pixels are summed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CHANGE_CUT", "apply_fit", "changed_share", "fit"]

#: The share of the compared area that may differ (summed changed regions of at least :data:`_MIN_REGION` pixels at
#: the working size), measured with benchmarks/dedup.py: edited copies stay under 0.001, changed scenes above 0.007.
CHANGE_CUT = 0.003

_CHANGE_LEVEL = 30.0  # a pixel differs when it is this far (0-255) from the other's 3 x 3 neighbourhood
_MIN_REGION = 6  # pixels: smaller specks are compression noise


def apply_fit(x: np.ndarray, fitted: tuple[float, np.ndarray] | None, cv2: Any) -> np.ndarray:
    """gain * x + offset per channel for a :func:`fit`'s (gain, offset), rounded and clipped to 0-255 (uint8); x as
    it is when nothing could be fitted (None)."""
    if fitted is None:
        return x
    gain, offset = fitted
    return cv2.transform(x, np.hstack([gain * np.eye(3), np.asarray(offset, np.float64).reshape(3, 1) + 0.5]))


def fit(x: np.ndarray, y: np.ndarray, inside: np.ndarray, step: int = 8, rounds: int = 3,
         ) -> tuple[float, np.ndarray] | None:  # fmt: skip
    """y ~ g x + o_c: one gain for every channel and an offset per channel, fitted where y is not clipped, three
    times, each time without the worst-fitting fifth (a changed object is not an edit); None when too few pixels of y
    are unclipped to fit on."""
    import cv2

    sx, sy, inside_s = (x[::step, ::step], y[::step, ::step], inside[::step, ::step]) if step > 1 else (x, y, inside)
    usable = inside_s & (cv2.inRange(np.ascontiguousarray(sy), (4, 4, 4), (251, 251, 251)) > 0)  # a sample will do
    xs = np.ascontiguousarray(sx[usable].T, np.float32)  # (3, n): channels first, each a contiguous row
    ys = np.ascontiguousarray(sy[usable].T, np.float32)
    if xs.shape[1] < 50:  # mostly clipped: a denser sample, else nothing to fit on
        return fit(x, y, inside, 2, rounds) if step > 2 else None
    gain, offset = 1.0, np.zeros(3, np.float32)
    for _ in range(rounds):
        n = xs.shape[1]
        if n < 50:
            break
        mx, my = xs.mean(1), ys.mean(1)
        xc = xs - mx[:, None]
        spread = float(np.vdot(xc, xc))
        if spread > 1:
            gain = min(max(float(np.vdot(xc, ys)) / spread, 0.7), 1.5)  # the centred x sums to 0: y need not be
        if rounds == 1:  # untrimmed: the mean will do
            return gain, (my - gain * mx).astype(np.float32)
        residual = ys - gain * xs
        offset = np.partition(residual, n // 2, axis=1)[:, n // 2]  # the median, per channel
        residual -= offset[:, None]
        np.abs(residual, out=residual)
        error = np.maximum(np.maximum(residual[0], residual[1]), residual[2])
        keep = error <= np.partition(error, (4 * n) // 5)[(4 * n) // 5]
        xs, ys = xs[:, keep], ys[:, keep]
    return gain, offset


def changed_share(y: np.ndarray, fitted: np.ndarray, inside: np.ndarray, cv2: Any, blur: float = 1.0,
            smallest: int = _MIN_REGION) -> float:  # fmt: skip
    """The share of ``inside`` covered by changed regions between two uint8 RGB pictures: brightness at a 1-pixel
    blur, colour (Cr, Cb) at half the size with the same blur (JPEG keeps colour at half resolution)."""
    k = 2 * round(2 * blur) + 1  # the kernel to two sigmas: the tails beyond add under one level
    bright = [cv2.GaussianBlur(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (k, k), blur) for c in (y, fitted)]  # Y of YCrCb
    changed = cv2.max(_beyond_slip(bright[0], bright[1], cv2), _beyond_slip(bright[1], bright[0], cv2))
    h, w = changed.shape
    half = (max(1, w // 2), max(1, h // 2))
    colour = [cv2.GaussianBlur(cv2.cvtColor(cv2.resize(c, half, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2YCrCb),
                               (k, k), blur) for c in (y, fitted)]  # fmt: skip  # its brightness channel unused
    colours = cv2.max(_beyond_slip(colour[0], colour[1], cv2), _beyond_slip(colour[1], colour[0], cv2))
    colours = cv2.resize(cv2.max(cv2.extractChannel(colours, 1), cv2.extractChannel(colours, 2)), (w, h),
                         interpolation=cv2.INTER_NEAREST)  # fmt: skip
    mask = inside.view(np.uint8)  # 0 or 1
    changed = cv2.bitwise_and(cv2.bitwise_or(cv2.threshold(changed, _CHANGE_LEVEL, 1, cv2.THRESH_BINARY)[1],
                                             cv2.threshold(colours, _CHANGE_LEVEL / 1.5, 1, cv2.THRESH_BINARY)[1]),
                              mask)  # fmt: skip  # colour counts half again
    area = cv2.countNonZero(mask)
    if area == 0 or cv2.countNonZero(changed) < smallest:
        return 0.0
    x, y0, bw, bh = cv2.boundingRect(changed)  # the regions are counted where they are
    region = np.ascontiguousarray(changed[y0 : y0 + bh, x : x + bw])
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(region, 8, cv2.CV_16U, cv2.CCL_SPAGHETTI)  # <= 256²
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas[areas >= smallest].sum()) / float(area)


def _beyond_slip(y: np.ndarray, x: np.ndarray, cv2: Any) -> np.ndarray:
    """How far each pixel of y (uint8) is outside the range of x's 3 x 3 neighbourhood (a one-pixel slip costs
    nothing); the subtractions saturate at 0."""
    kernel = np.ones((3, 3), np.uint8)
    return cv2.max(cv2.subtract(y, cv2.dilate(x, kernel)), cv2.subtract(cv2.erode(x, kernel), y))
