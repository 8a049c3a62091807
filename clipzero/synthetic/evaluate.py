"""Zero-shot accuracy on the shapes world: seen and held-out combinations, English and Chinese, styles."""

from __future__ import annotations

from dataclasses import dataclass

from ..encoder import Encoder
from ..zeroshot import ZeroShotClassifier
from .world import HELD_OUT, Style, all_combinations, combination_label, single_object_set

__all__ = ["Accuracy", "shapes_accuracy", "single_object_set"]  # single_object_set lives in .world


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy over one evaluation set."""

    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else 0.0


def shapes_accuracy(
    encoder: Encoder,
    *,
    split: str = "seen",
    language: str = "en",
    templates: str = "photo",
    per_combo: int = 8,
    seed: int = 1234,
    style: Style | None = None,
    label_cache: bool = True,
) -> Accuracy:
    """Top-1 zero-shot accuracy on single-object images against the full colour x shape label set.

    Args:
        encoder: the model.
        split: ``seen`` (combinations used in pretraining) or ``held-out`` (never seen).
        language: ``en`` labels (``red circle``) or ``zh`` labels (``红色圆形``).
        templates: the template set used for the labels.
        per_combo: images per combination.
        seed: the evaluation images' seed (pretraining streams never use the same generator state).
        style: style knobs applied to the images.
        label_cache: keep label embeddings in the persistent cache (off for a model still being trained).
    """
    every = all_combinations()
    combos = [c for c in every if (c in HELD_OUT) == (split == "held-out")]
    labels = [combination_label(c, s, language) for c, s in every]
    classifier = ZeroShotClassifier(encoder, labels, templates=templates, label_cache=label_cache)
    items = single_object_set(combos, per_combo, seed, style)
    predictions = classifier.classify([image for image, _ in items], top_k=1, batch_size=128)
    correct = sum(p.label == combination_label(c, s, language) for p, (_, (c, s)) in zip(predictions, items))
    return Accuracy(correct, len(items))
