"""Captions for shapes-world scenes: a grammar with many phrasings, in English and Chinese."""

from __future__ import annotations

import random
from collections import Counter

from .world import COLOURS, SHAPES, Scene, ShapeObject

__all__ = ["caption"]

_EN_SIZE = {"small": "small", "medium": "medium-sized", "large": "large"}
_ZH_SIZE = {"small": "小", "medium": "中等大小的", "large": "大"}
_EN_BG = {"flat": "plain", "gradient": "gradient", "noise": "noisy", "stripes": "striped"}
_ZH_BG = {"flat": "纯色", "gradient": "渐变", "noise": "杂色", "stripes": "条纹"}
_EN_NUM = {2: "two", 3: "three"}
_ZH_NUM = {2: "两", 3: "三"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _where(obj: ShapeObject) -> str:
    """left, right, top, bottom or center, from the object's centre."""
    dx, dy = obj.x - 0.5, obj.y - 0.5
    if max(abs(dx), abs(dy)) < 0.1:
        return "center"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


_ZH_WHERE = {"left": "左边", "right": "右边", "top": "上面", "bottom": "下面", "center": "中间"}


def _en_one(obj: ShapeObject, rng: random.Random, with_size: bool | None = None) -> str:
    size = _EN_SIZE[obj.size] + " " if (with_size if with_size is not None else rng.random() < 0.3) else ""
    words = f"{size}{obj.colour} {obj.shape}"
    return f"{_article(words)} {words}"


def _zh_one(obj: ShapeObject, rng: random.Random) -> str:
    colour, shape = COLOURS[obj.colour][0], SHAPES[obj.shape][0]
    size = _ZH_SIZE[obj.size] if rng.random() < 0.3 else ""
    return rng.choice([f"一个{size}{colour}的{shape}", f"一个{size}{colour}{shape}"])


def _en_single(scene: Scene, rng: random.Random) -> str:
    obj = scene.objects[0]
    c, s, where = obj.colour, obj.shape, _where(obj)
    one = _en_one(obj, rng)
    bg = _EN_BG[scene.background]
    place = (
        "in the center" if where == "center" else f"on the {where}" if where in ("left", "right") else f"at the {where}"
    )
    options = [
        f"{c} {s}",
        f"{one}",
        f"{one} {place}",
        f"a photo of {one}.",
        f"a picture of {one}.",
        f"an image of {one}.",
        f"{one} on a {bg} background",
        f"there is {one} {place}.",
        f"a {s} coloured {c}",
        f"a {c}-coloured {s}",
        f"this is {one}.",
        f"a {_EN_SIZE[obj.size]} {c} {s}",
        f"a drawing of {one}.",
        f"one {c} {s}",
        f"a single {c} {s} {place}",
    ]
    return rng.choice(options)


def _zh_single(scene: Scene, rng: random.Random) -> str:
    obj = scene.objects[0]
    colour, shape = COLOURS[obj.colour][0], SHAPES[obj.shape][0]
    one = _zh_one(obj, rng)
    where = _ZH_WHERE[_where(obj)]
    bg = _ZH_BG[scene.background]
    options = [
        f"{colour}{shape}",
        f"{colour}的{shape}",
        one,
        f"{where}有{one}",
        f"一张{colour}{shape}的照片。",
        f"一张{colour}的{shape}的图片",
        f"图片里有{one}。",
        f"{bg}背景上的{colour}{shape}",
        f"这是{one}。",
        f"一个{_ZH_SIZE[obj.size]}{colour}{shape}",
        f"一幅{colour}{shape}的画",
        f"{one}在{where}",
    ]
    return rng.choice(options)


def _en_many(scene: Scene, rng: random.Random) -> str:
    objects = list(scene.objects)
    kinds = Counter((o.colour, o.shape) for o in objects)
    if len(kinds) == 1:
        (colour, shape), n = next(iter(kinds.items()))
        plural = SHAPES[shape][1]
        return rng.choice(
            [
                f"{_EN_NUM[n]} {colour} {plural}",
                f"{_EN_NUM[n]} {colour} {plural} side by side",
                f"a photo of {_EN_NUM[n]} {colour} {plural}.",
                f"a pair of {colour} {plural}" if n == 2 else f"three {colour} {plural}",
            ]
        )
    if len(objects) == 2 and rng.random() < 0.5:
        first, second = sorted(objects, key=lambda o: (o.x, o.y))
        horizontal = abs(first.x - second.x) > abs(first.y - second.y)
        if not horizontal:
            first, second = sorted(objects, key=lambda o: o.y)
        a, b = ("on the left", "on the right") if horizontal else ("at the top", "at the bottom")
        return f"{_en_one(first, rng)} {a} and {_en_one(second, rng)} {b}"
    rng.shuffle(objects)
    parts = [_en_one(o, rng) for o in objects]
    joined = " and ".join(parts) if len(parts) == 2 else f"{parts[0]}, {parts[1]} and {parts[2]}"
    return rng.choice([joined, f"a photo of {joined}.", f"{_EN_NUM[len(parts)]} shapes: {joined}"])


def _zh_many(scene: Scene, rng: random.Random) -> str:
    objects = list(scene.objects)
    kinds = Counter((o.colour, o.shape) for o in objects)
    if len(kinds) == 1:
        (colour, shape), n = next(iter(kinds.items()))
        zc, zs = COLOURS[colour][0], SHAPES[shape][0]
        return rng.choice([f"{_ZH_NUM[n]}个{zc}的{zs}", f"{_ZH_NUM[n]}个{zc}{zs}", f"一张{_ZH_NUM[n]}个{zc}{zs}的照片"])
    if len(objects) == 2 and rng.random() < 0.5:
        first, second = sorted(objects, key=lambda o: o.x)
        if abs(first.x - second.x) > abs(first.y - second.y):
            return f"左边是{_zh_one(first, rng)}，右边是{_zh_one(second, rng)}"
        first, second = sorted(objects, key=lambda o: o.y)
        return f"上面是{_zh_one(first, rng)}，下面是{_zh_one(second, rng)}"
    rng.shuffle(objects)
    parts = [_zh_one(o, rng) for o in objects]
    joined = "和".join(parts) if len(parts) == 2 else f"{parts[0]}、{parts[1]}和{parts[2]}"
    return rng.choice([joined, f"图片里有{joined}", f"{_ZH_NUM[len(parts)]}个图形：{joined}"])


def caption(scene: Scene, rng: random.Random, language: str = "en") -> str:
    """A caption for ``scene`` in ``language`` (``en`` or ``zh``), phrased at random from ``rng``."""
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', got {language!r}")
    if len(scene.objects) == 1:
        return _en_single(scene, rng) if language == "en" else _zh_single(scene, rng)
    return _en_many(scene, rng) if language == "en" else _zh_many(scene, rng)
