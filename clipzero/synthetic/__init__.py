"""The shapes world: a procedural image-and-caption generator, and the recipe that trains clipzero-shapes."""

from .world import COLOURS, HELD_OUT, SHAPES, Scene, ShapeObject, Style, all_combinations, render, sample_scene

__all__ = [
    "COLOURS",
    "HELD_OUT",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "Style",
    "all_combinations",
    "render",
    "sample_scene",
]
