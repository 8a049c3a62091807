"""clipzero: label images with free-text labels, zero-shot, with open CLIP models.

The public API is what ``__all__`` lists; everything else may change. Heavy modules (torch, open_clip) load on
first use, so importing clipzero and ``clipzero --help`` stay fast.

Example:
    >>> import clipzero
    >>> encoder = clipzero.load_model("ViT-B-32-256:datacomp_s34b_b86k")
    >>> classifier = clipzero.ZeroShotClassifier(encoder, ["cat", "dog", "car"])
    >>> [p.label for p in classifier.classify(["a.jpg", "b.jpg"])]
    ['cat', 'car']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ClipzeroError,
    ClipzeroWarning,
    ConfigError,
    ImageError,
    LabelError,
    ModelLoadError,
    ModelNotFoundError,
    ModelUnavailableError,
    StoreError,
    TemplateError,
)

__version__ = "0.1.0"

__all__ = [
    "ClipzeroError",
    "ClipzeroWarning",
    "ConfigError",
    "EmbeddingStore",
    "Encoder",
    "ImageError",
    "LabelError",
    "LabelScore",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "Prediction",
    "SearchHit",
    "StoreError",
    "TagFailure",
    "TagResult",
    "TagSummary",
    "TemplateError",
    "TemplateSet",
    "ZeroShotClassifier",
    "__version__",
    "describe_model",
    "find_duplicates",
    "find_images",
    "list_template_sets",
    "load_image",
    "load_model",
    "load_templates",
    "open_store",
    "read_labels",
    "register_model",
    "tag_images",
]

# Public name -> the module that defines it; imported on first access.
_LAZY = {
    "TagFailure": "tagging",
    "TagResult": "tagging",
    "TagSummary": "tagging",
    "tag_images": "tagging",
    "EmbeddingStore": "store",
    "Encoder": "encoder",
    "SearchHit": "store",
    "find_duplicates": "dedup",
    "find_images": "images",
    "open_store": "factory",
    "LabelScore": "zeroshot",
    "ModelInfo": "modelinfo",
    "Prediction": "zeroshot",
    "TemplateSet": "prompts",
    "ZeroShotClassifier": "zeroshot",
    "describe_model": "modelinfo",
    "list_template_sets": "prompts",
    "load_image": "images",
    "load_model": "models",
    "load_templates": "prompts",
    "read_labels": "zeroshot",
    "register_model": "models",
}

if TYPE_CHECKING:
    from .dedup import find_duplicates
    from .encoder import Encoder
    from .factory import open_store
    from .images import find_images, load_image
    from .modelinfo import ModelInfo, describe_model
    from .models import load_model, register_model
    from .prompts import TemplateSet, list_template_sets, load_templates
    from .store import EmbeddingStore, SearchHit
    from .tagging import TagFailure, TagResult, TagSummary, tag_images
    from .zeroshot import LabelScore, Prediction, ZeroShotClassifier, read_labels


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipzero' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
