"""What a classification returns: :class:`Prediction` per image, :class:`LabelScore` per label, and for
multi-label tagging :class:`Tag` per label that applies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .rejection import Rejection

__all__ = ["LabelScore", "Prediction", "Tag"]


@dataclass(frozen=True)
class Tag:
    """A label that applies to an image (multi-label tagging).

    Attributes:
        label: the label exactly as given.
        score: the confidence that it applies, 0 to 1: its share of the best view against the other labels and
            "none of these" (a per-label sigmoid for SigLIP-family models); the decision cut is calibrated per model.
        similarity: the cosine similarity of the label and its best view.
        region: that view, as (left, top, right, bottom) fractions of the image; (0, 0, 1, 1) is the whole image.
    """

    label: str
    score: float
    similarity: float
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "similarity": self.similarity, "region": list(self.region)}


@dataclass(frozen=True)
class LabelScore:
    """One label's result for one image.

    Attributes:
        label: the label exactly as given.
        score: probability (softmax over the label set; sigmoid per label for SigLIP-family models).
        similarity: raw cosine similarity between the image and the label's class embedding, in [-1, 1].
    """

    label: str
    score: float
    similarity: float


@dataclass(frozen=True)
class Prediction:
    """The result for one image.

    Attributes:
        image: the image as given (its path, or a description for bytes and PIL images).
        label: the top label, or None: "none of these" (below the probability threshold, or rejected as fitting
            none of the labels) or on error.
        predictions: the top-k labels, best first.
        error: why the image could not be classified, or None.
        rejection: with ``reject`` or ``min_similarity``: the rejection score and cut, and the nearest label.
        tags: multi-label only: every label whose decision is yes, best first (empty: none of these); ``label`` is
            then the first of them.
    """

    image: str
    label: str | None
    predictions: list[LabelScore] = field(default_factory=list)
    error: str | None = None
    rejection: Rejection | None = None
    tags: list[Tag] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form: ``{"image", "label", "predictions": [{"label", "score", "similarity"}]}`` (with
        ``"labels": [{"label", "score", "similarity", "region"}]`` for multi-label), or ``{"image", "error"}`` for an
        image that could not be read."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        predictions = [asdict(p) for p in self.predictions]
        row: dict[str, Any] = {"image": self.image, "label": self.label}
        if self.tags is not None:
            row["labels"] = [t.to_dict() for t in self.tags]
        row["predictions"] = predictions
        if self.rejection is not None:
            row["rejection"] = self.rejection.to_dict()
        return row
