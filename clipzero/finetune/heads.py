"""Classifiers over frozen embeddings that behave like the zero-shot one: a trained linear head or a cache adapter.

Both are :class:`~clipzero.zeroshot.ZeroShotClassifier` subclasses whose labels are the ones they were trained on,
so ``classify``, ``tag_images``, the CLI (``--head``) and the service use them unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..encoder import Encoder
from ..errors import AdapterError
from ..zeroshot import ZeroShotClassifier
from .cache_adapter import CacheAdapter
from .linear_probe import LinearHead

__all__ = ["CacheClassifier", "HeadClassifier", "load_head"]


def _check_model(kind: str, path: object, trained_on: str, encoder: Encoder) -> None:
    if trained_on and trained_on != encoder.id:
        raise AdapterError(f"{kind} {path} was trained on embeddings of {trained_on!r}, not of {encoder.id!r}")


class _TrainedClassifier(ZeroShotClassifier):
    """A classifier whose labels and weights come from a trained file rather than from prompts."""

    def __init__(self, encoder: Encoder, kind: str, source: object, model_id: str, classes: list[str],
                 weights: np.ndarray) -> None:  # fmt: skip
        _check_model(kind, source, model_id, encoder)
        self.encoder = encoder
        self.labels = list(classes)
        self.templates = None  # type: ignore[assignment]
        self.label_cache = None
        self.weights = weights

    @property
    def uses_sigmoid(self) -> bool:
        return False


class HeadClassifier(_TrainedClassifier):
    """A linear probe's predictions; ``similarity`` in results is the head's logit."""

    def __init__(self, encoder: Encoder, head: LinearHead, source: object = "head") -> None:
        super().__init__(encoder, "linear head", source, head.model_id, head.classes, head.weight)
        self.head = head

    def logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = self.head.logits(embeddings)
        return logits, logits.astype(np.float32)


class CacheClassifier(_TrainedClassifier):
    """Zero-shot plus the votes of the nearest labelled examples (see :mod:`clipzero.finetune.cache_adapter`)."""

    def __init__(self, encoder: Encoder, adapter: CacheAdapter, source: object = "cache adapter") -> None:
        super().__init__(encoder, "cache adapter", source, adapter.model_id, adapter.classes, adapter.text_weights)
        self.adapter = adapter

    def logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        similarities = np.asarray(embeddings, np.float32) @ self.weights.T
        return self.adapter.logits(embeddings), similarities


def load_head(path: str | os.PathLike[str], encoder: Encoder) -> ZeroShotClassifier:
    """The classifier saved at ``path``: a linear head file, or a cache adapter folder.

    Raises:
        AdapterError: neither, unreadable, or trained on another model's embeddings.
    """
    source = Path(path)
    if source.is_dir():
        return CacheClassifier(encoder, CacheAdapter.load(source), source)
    if source.is_file():
        return HeadClassifier(encoder, LinearHead.load(source), source)
    raise AdapterError(f"head {source}: no such file or folder (a linear head .safetensors or a cache adapter folder)")
