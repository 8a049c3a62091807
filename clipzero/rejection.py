"""Open-set rejection: "none of these" when an image fits none of the labels.

The probability of the best label cannot say this: it is a share among the labels given, so with two labels one of
them gets at least 0.5 whatever the image shows. The cosine similarity of the image and its best label can (an
image that fits one of the labels is closer to it than an image that fits none), but its scale differs from model
to model (about 0.2-0.35 for real CLIP models on photos, 0.6-0.9 for the bundled one).

``reject="auto"`` therefore cuts the best label's similarity at a threshold **calibrated per model and template
set on a reference task clipzero generates itself**: single-object scenes of the shapes world
(:mod:`clipzero.synthetic`), scored against a list of 8 colour x shape labels. Images of a listed combination are
the fits; images of unlisted combinations that share the colour or the shape of a listed one are the near misses,
the hardest "none of these" there is. The threshold is the middle of the cuts that best tell the two apart
(balanced accuracy). It is computed once per (model, template set), from 120 images and 8 labels, and kept on disk
(``$CLIPZERO_HOME/rejection.json``). A user's own data gives a better one: ``clipzero calibrate``.

Every result then carries a rejection score, ``(similarity - threshold) / spread``, where ``spread`` is the gap
between the typical fit and the typical near miss on the reference: 0 at the cut, about +0.5 for a typical fit,
about -0.5 for a typical near miss, comparable across models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .rulecache import remembered

__all__ = [
    "REJECT_MODES",
    "Rejection",
    "RejectionRule",
    "check_reject",
    "clear_rule_cache",
    "reference_rule",
    "rule_from_scores",
]

#: What ``reject`` may be: None (off) or ``auto``.
REJECT_MODES = ("auto",)

#: The reference labels: 8 combinations, each colour and each shape once.
_REFERENCE = (
    ("red", "circle"),
    ("orange", "square"),
    ("yellow", "triangle"),
    ("green", "star"),
    ("blue", "hexagon"),
    ("purple", "heart"),
    ("pink", "cross"),
    ("black", "diamond"),
)
_REFERENCE_VERSION = 1  # bump when the reference task changes: rules computed on an older one are recomputed
_PER_COMBO = 8
_SEED = 20_251_202

_lock = threading.Lock()
_memory: dict[str, RejectionRule] = {}


@dataclass(frozen=True)
class RejectionRule:
    """Where "none of these" starts for one model and template set.

    Attributes:
        threshold: the best label's cosine similarity below which an image fits none of the labels.
        spread: the typical gap between a fit and a near miss (for the score's scale).
        source: ``reference`` (clipzero's own reference task), ``calibration`` (``clipzero calibrate``) or
            ``min-similarity`` (a cut given by hand).
        separable: False when the reference could not tell fits from near misses (balanced accuracy under 0.75):
            the threshold then sits between their medians and means little.
        accuracy: the balanced accuracy of the threshold on the data it was fitted on.
    """

    threshold: float
    spread: float = 0.1
    source: str = "reference"
    separable: bool = True
    accuracy: float = 0.0

    def score(self, similarity: float) -> float:
        """The rejection score of a best-label similarity: negative means "none of these"."""
        return (similarity - self.threshold) / max(self.spread, 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rejection:
    """Why an image kept or lost its label, for a caller to audit the cut.

    Attributes:
        score: the rejection score (negative: rejected), see :meth:`RejectionRule.score`.
        similarity: the best label's cosine similarity.
        threshold: the similarity cut used.
        rejected: True when the image got "none of these".
        nearest: the best label, kept or not.
        nearest_score: its probability among the labels.
        source: where the cut came from (``reference``, ``calibration``, ``min-similarity``).
    """

    score: float
    similarity: float
    threshold: float
    rejected: bool
    nearest: str
    nearest_score: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clear_rule_cache() -> None:
    """Forget the rules held in this process (those on disk stay)."""
    with _lock:
        _memory.clear()


def check_reject(reject: str | None, min_similarity: float | None = None) -> None:
    """A rejection request is one the classifier can serve (no model needed).

    Raises:
        ConfigError: an unknown mode, or a similarity outside [-1, 1].
    """
    if reject is not None and reject not in REJECT_MODES:
        raise ConfigError(f"reject must be one of {', '.join(REJECT_MODES)} (or left out), got {reject!r}")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise ConfigError(f"--min-similarity must be a cosine similarity between -1 and 1, got {min_similarity}")


def rule_from_scores(fits: Sequence[float], misses: Sequence[float], source: str) -> RejectionRule:
    """The threshold that best tells ``fits`` (best-label similarities of images that fit a label) from ``misses``
    (of images that fit none): the middle of the cuts with the highest balanced accuracy.

    Raises:
        ConfigError: either side is empty.
    """
    pos, neg = np.asarray(fits, np.float64), np.asarray(misses, np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ConfigError("a rejection threshold needs images that fit a label and images that fit none")
    cuts = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([cuts, [cuts[-1] + 1e-6]])
    kept = (pos[None, :] >= cuts[:, None]).mean(axis=1)  # (n_cuts,)
    rejected = (neg[None, :] < cuts[:, None]).mean(axis=1)
    balanced = (kept + rejected) / 2
    best = float(balanced.max())
    spread = float(max(np.median(pos) - np.median(neg), 1e-3))
    if best < 0.75:  # no real gap: cut between the medians, scored on the spread of all the scores
        threshold = float((np.median(pos) + np.median(neg)) / 2)
        spread = float(max(np.std(np.concatenate([pos, neg])), 1e-3))
        return RejectionRule(threshold, spread, source, separable=False, accuracy=best)
    winners = np.flatnonzero(balanced >= best - 1e-12)
    # The cuts from the first to the last winner all score best; the middle of that range (between the highest
    # miss below and the lowest fit above) leaves room on both sides.
    low = cuts[winners[0] - 1] if winners[0] > 0 else cuts[winners[0]]
    threshold = float((low + cuts[winners[-1]]) / 2)
    return RejectionRule(threshold, spread, source, separable=True, accuracy=best)


def reference_rule(encoder: Any, templates_hash: str, class_embeddings: Callable[[list[str]], np.ndarray],
                   language: str = "en") -> RejectionRule:  # fmt: skip
    """The ``auto`` rule of a model and template set: from memory, from disk, else computed on the reference task.

    Args:
        encoder: the model (its ``id`` keys the rule; it encodes the reference images).
        templates_hash: the template set's content hash (it keys the rule too).
        class_embeddings: labels -> their class embeddings with the template set, (n, dim) L2-normalised (the
            classifier's own, so the label caches serve them).
        language: the template set's language: the reference labels are written in it (``zh``: 红色圆形).
    """
    language = "zh" if language == "zh" else "en"
    key = f"{encoder.id}|{templates_hash}|{language}|v{_REFERENCE_VERSION}"
    return remembered("rejection.json", key, _memory, _lock, RejectionRule,
                      lambda: _compute(encoder, class_embeddings, language))


def _compute(encoder: Any, class_embeddings: Callable[[list[str]], np.ndarray], language: str) -> RejectionRule:
    from .pipeline import embed_all
    from .synthetic.world import all_combinations, combination_label, single_object_set

    listed = list(_REFERENCE)
    # Every unlisted combination shares its colour or its shape with a listed one: one image of each (56).
    near = [c for c in all_combinations() if c not in listed and any(c[0] == a or c[1] == b for a, b in listed)]
    fits = single_object_set(listed, _PER_COMBO, _SEED)
    misses = single_object_set(near, 1, _SEED + 1)
    weights = class_embeddings([combination_label(c, s, language) for c, s in listed])  # (8, dim)
    items = embed_all([image for image, _ in fits + misses], encoder, workers=0)
    vectors = np.stack([item.vector for item in items])  # type: ignore[misc]  # (64, dim)
    best = (vectors @ weights.T).max(axis=1)  # (64,) the best listed label's similarity
    return rule_from_scores(best[: len(fits)], best[len(fits) :], "reference")
