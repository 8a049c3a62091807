"""The shapes world: small images of coloured shapes, with captions in English and Chinese.

Everything is deterministic from a seed. A scene holds one to three objects, each with a shape, a colour, a size, a
position and a rotation, over a background (flat, gradient, noise or stripes). Style knobs (outline-only, blur,
noise, texture) shift the look away from what the bundled model was trained on, to make domains where zero-shot is
weak. A fixed set of colour x shape combinations (:data:`HELD_OUT`) never appears in pretraining.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "COLOURS",
    "HELD_OUT",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "Style",
    "all_combinations",
    "combination_label",
    "render",
    "sample_scene",
    "single_object_set",
]

#: Colour names, their Chinese names, and the RGB centre each is drawn around (with jitter).
COLOURS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "red": ("红色", (215, 30, 35)),
    "orange": ("橙色", (245, 135, 20)),
    "yellow": ("黄色", (240, 215, 30)),
    "green": ("绿色", (40, 165, 55)),
    "blue": ("蓝色", (35, 75, 215)),
    "purple": ("紫色", (130, 45, 175)),
    "pink": ("粉色", (245, 130, 190)),
    "black": ("黑色", (20, 20, 22)),
}

#: Shape names, their Chinese names, and their plurals.
SHAPES: dict[str, tuple[str, str]] = {
    "circle": ("圆形", "circles"),
    "square": ("正方形", "squares"),
    "triangle": ("三角形", "triangles"),
    "star": ("星星", "stars"),
    "hexagon": ("六边形", "hexagons"),
    "heart": ("心形", "hearts"),
    "cross": ("十字", "crosses"),
    "diamond": ("菱形", "diamonds"),
}


def _held_out() -> frozenset[tuple[str, str]]:
    # 10 of the 64 combinations (15.6%), spread so every colour and every shape keeps most of its combinations.
    colours, shapes = list(COLOURS), list(SHAPES)
    picks = {(colours[i], shapes[(3 * i + 1) % 8]) for i in range(8)}
    picks |= {(colours[i], shapes[(3 * i + 5) % 8]) for i in (0, 5)}
    return frozenset(picks)


#: Colour x shape combinations that never appear in pretraining images or captions.
HELD_OUT: frozenset[tuple[str, str]] = _held_out()


def all_combinations() -> list[tuple[str, str]]:
    """Every (colour, shape) pair, colour-major."""
    return [(c, s) for c in COLOURS for s in SHAPES]


def combination_label(colour: str, shape: str, language: str = "en") -> str:
    """The label for a combination: ``red circle`` or ``红色圆形``."""
    if language == "zh":
        return f"{COLOURS[colour][0]}{SHAPES[shape][0]}"
    return f"{colour} {shape}"


SIZES = {"small": (0.14, 0.19), "medium": (0.21, 0.27), "large": (0.30, 0.36)}  # radius / image side


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the width
    y: float
    radius: float  # as a fraction of the side
    rotation: float  # degrees
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Style:
    """Knobs that move images away from the pretraining look.

    Attributes:
        outline: draw shapes as outlines only.
        blur: Gaussian blur radius in pixels (0 = none).
        noise: standard deviation of added pixel noise, 0-255 scale.
        texture: overlay a random stripe/dot texture on the shapes.
    """

    outline: bool = False
    blur: float = 0.0
    noise: float = 0.0
    texture: bool = False


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str
    background_rgb: tuple[tuple[int, int, int], tuple[int, int, int]]
    size: int = 64
    style: Style = field(default_factory=Style)
    seed: int = 0


_BACKGROUNDS = ("flat", "gradient", "noise", "stripes")
# Muted background tones, so that an object's colour is never the background's colour.
_BG_TONES = [
    (235, 235, 232),
    (205, 205, 200),
    (160, 160, 165),
    (110, 110, 115),
    (245, 240, 225),
    (200, 215, 220),
    (225, 225, 240),
    (70, 72, 78),
]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 22) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return math.dist(a, b)


def sample_scene(
    rng: random.Random,
    *,
    size: int = 64,
    n_objects: int | None = None,
    allowed: list[tuple[str, str]] | None = None,
    style: Style | None = None,
    backgrounds: tuple[str, ...] | None = None,
    sizes: tuple[str, ...] | None = None,
) -> Scene:
    """Draw a random scene.

    Args:
        rng: the random source (deterministic for a seed).
        size: image side in pixels (64 to 96 recommended).
        n_objects: 1 to 3; None draws one (60%), two (28%) or three (12%).
        allowed: the (colour, shape) pairs objects may take; default all but :data:`HELD_OUT`.
        style: style knobs; default none.
        backgrounds: the backgrounds to choose from (flat, gradient, noise, stripes); default all.
        sizes: the size names a lone object may take (small, medium, large); default all.
    """
    pool = allowed if allowed is not None else [c for c in all_combinations() if c not in HELD_OUT]
    count = n_objects or rng.choices((1, 2, 3), weights=(60, 28, 12))[0]
    background = rng.choice(backgrounds or _BACKGROUNDS)
    objects: list[ShapeObject] = []
    slots = {1: [(0.5, 0.5)], 2: [(0.27, 0.5), (0.73, 0.5)], 3: [(0.2, 0.3), (0.8, 0.3), (0.5, 0.75)]}[count]
    if count == 2 and rng.random() < 0.3:
        slots = [(0.5, 0.27), (0.5, 0.73)]
    if count == 2 and rng.random() < 0.4:  # two of the same kind, to teach counting phrases
        twin = rng.choice(pool)
        picks = [twin, twin]
    else:
        picks = [rng.choice(pool) for _ in range(count)]
    size_names = list(sizes or SIZES) if count == 1 else ["small", "medium"]
    for (colour, shape), (sx, sy) in zip(picks, slots):
        size_name = rng.choice(size_names)
        radius = rng.uniform(*SIZES[size_name]) * (0.8 if count > 1 else 1.0)
        spread = 0.22 if count == 1 else 0.05
        x = min(max(sx + rng.uniform(-spread, spread), radius), 1 - radius)
        y = min(max(sy + rng.uniform(-spread, spread), radius), 1 - radius)
        limit = {"square": 15, "diamond": 15, "heart": 20, "cross": 20}.get(shape, 180)
        objects.append(
            ShapeObject(
                shape, colour, size_name, x, y, radius, rng.uniform(-limit, limit), _jitter(COLOURS[colour][1], rng)
            )
        )
    tones = [t for t in _BG_TONES if all(_contrast(t, o.rgb) > 120 for o in objects)] or [(128, 128, 128)]
    bg = (_jitter(rng.choice(tones), rng, 10), _jitter(rng.choice(tones), rng, 10))
    return Scene(tuple(objects), background, bg, size, style or Style(), rng.randrange(2**31))


def _polygon(shape: str, cx: float, cy: float, r: float, rotation: float) -> list[tuple[float, float]]:
    def rotate(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        a = math.radians(rotation)
        return [
            (cx + px * math.cos(a) - py * math.sin(a), cy + px * math.sin(a) + py * math.cos(a)) for px, py in points
        ]

    def regular(n: int, start: float) -> list[tuple[float, float]]:
        return [
            (r * math.cos(start + 2 * math.pi * k / n), r * math.sin(start + 2 * math.pi * k / n)) for k in range(n)
        ]

    if shape == "square":
        s = r * 0.82
        return rotate([(-s, -s), (s, -s), (s, s), (-s, s)])
    if shape == "triangle":
        return rotate(regular(3, -math.pi / 2))
    if shape == "hexagon":
        return rotate(regular(6, 0))
    if shape == "diamond":
        return rotate([(0, -r), (r * 0.62, 0), (0, r), (-r * 0.62, 0)])
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + math.pi * k / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
        return rotate(points)
    if shape == "cross":
        a, b = r * 0.33, r
        return rotate(
            [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]
        )
    if shape == "heart":
        points = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            hx = 16 * math.sin(t) ** 3
            hy = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((hx * r / 17, (hy + 2) * r / 17))
        return rotate(points)
    raise ValueError(f"unknown shape {shape!r}")


def _background(scene: Scene, side: int, rng: np.random.Generator) -> np.ndarray:
    a, b = (np.array(c, dtype=np.float32) for c in scene.background_rgb)
    if scene.background == "flat":
        return np.broadcast_to(a, (side, side, 3)).copy()
    if scene.background == "gradient":
        t = np.linspace(0, 1, side, dtype=np.float32)
        ramp = t[None, :, None] if rng.random() < 0.5 else t[:, None, None]
        return np.broadcast_to(a + (b - a) * ramp, (side, side, 3)).copy()
    if scene.background == "noise":
        return np.clip(a + rng.normal(0, 14, (side, side, 1)).astype(np.float32), 0, 255)
    period = int(rng.integers(6, 14)) * side // 64  # stripes
    rows, cols = np.mgrid[0:side, 0:side]
    phase = (rows + (cols if rng.random() < 0.5 else 0)) // max(period, 1)  # horizontal or diagonal stripes
    mask = (phase % 2 == 0)[..., None]  # (side, side, 1)
    return np.where(mask, a, a * 0.55 + b * 0.45).astype(np.float32)


def render(scene: Scene) -> Image.Image:
    """Draw a scene as an RGB image of ``scene.size`` pixels (drawn at twice the size, then downsampled)."""
    rng = np.random.default_rng(scene.seed)
    scale = 2
    side = scene.size * scale
    canvas = Image.fromarray(_background(scene, side, rng).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    style = scene.style
    for obj in scene.objects:
        cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
        width = max(2, int(r * 0.16))
        if obj.shape == "circle":
            box = (cx - r, cy - r, cx + r, cy + r)
            if style.outline:
                draw.ellipse(box, outline=obj.rgb, width=width)
            else:
                draw.ellipse(box, fill=obj.rgb)
        else:
            points = _polygon(obj.shape, cx, cy, r, obj.rotation)
            if style.outline:
                draw.line([*points, points[0]], fill=obj.rgb, width=width, joint="curve")
            else:
                draw.polygon(points, fill=obj.rgb)
    if style.texture:
        _texture(canvas, scene, rng)
    image = canvas.resize((scene.size, scene.size), Image.Resampling.BILINEAR)
    if style.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(style.blur))
    if style.noise > 0:
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, style.noise, (scene.size, scene.size, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return image


def _texture(canvas: Image.Image, scene: Scene, rng: np.random.Generator) -> None:
    # Dark and light stripes across each shape's area: the shape keeps its outline and hue, its surface changes.
    array = np.asarray(canvas, dtype=np.float32)
    side = array.shape[0]
    yy, xx = np.mgrid[0:side, 0:side]
    period = int(rng.integers(4, 9))
    pattern = np.sin((xx * rng.uniform(-1, 1) + yy) * 2 * np.pi / period)[..., None]
    mask = np.zeros((side, side, 1), dtype=bool)
    for obj in scene.objects:
        cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
        mask |= (((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r)[..., None]
    array = np.where(mask, np.clip(array * (1 + 0.35 * pattern), 0, 255), array)
    canvas.paste(Image.fromarray(array.astype(np.uint8), "RGB"))


def scene_summary(scene: Scene) -> dict[str, Any]:
    """The ground truth of a scene, as plain data."""
    return {
        "background": scene.background,
        "objects": [
            {"shape": o.shape, "colour": o.colour, "size": o.size, "x": round(o.x, 3), "y": round(o.y, 3)}
            for o in scene.objects
        ],
    }


def single_object_set(
    combos: list[tuple[str, str]],
    per_combo: int,
    seed: int,
    style: Style | None = None,
    sizes: tuple[int, ...] = (64, 80, 96),
) -> list[tuple[Image.Image, tuple[str, str]]]:
    """(image, (colour, shape)) pairs: ``per_combo`` single-object scenes of each combination, from ``seed``."""
    rng = random.Random(seed)
    items: list[tuple[Image.Image, tuple[str, str]]] = []
    for combo in combos:
        for _ in range(per_combo):
            scene = sample_scene(rng, size=rng.choice(sizes), n_objects=1, allowed=[combo], style=style)
            items.append((render(scene), combo))
    return items
