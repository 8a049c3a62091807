"""Every label that applies: multi-label tagging with views and calibrated per-label decisions.

One embedding of a picture with several things in it is dominated by one of them: on scenes of two or three shapes
the bundled model's single embedding ranked the present labels with a mean average precision of 0.45. So each image
is embedded as several **views** (:func:`clipzero.images.view_boxes`: the whole image and half-size crops, decoded
once), and each label is scored on its best view.

A label's **score** in a view is its share of a softmax over the labels *and "none of these"*, whose logit sits at a
similarity cut: a label wins a view only by beating the other labels there and the cut. Competition is what makes
the score sharp (a crop that shows a blue star scores "blue circle" low although the two are similar); the "none"
class is what keeps it honest (with a few labels, none of them present, no label wins a view just by being the
least bad). The image's score for a label is its best view's; the decision is that score against a cut.

The similarity cut, the softmax temperature and the decision cut are **calibrated per model, template set and
number of views on a reference task clipzero generates** (as ``reject auto`` is for one label): 48 shapes-world
scenes of two or three objects, scored against all 64 colour x shape labels, the cuts chosen for the best micro-F1.
They are computed once and kept in ``$CLIPZERO_HOME/multilabel.json``. SigLIP-family models score each label with
their own sigmoid instead (and decide at 0.5). ``min_similarity`` replaces the calibrated cut by a raw one.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .images import VIEW_COUNTS, view_boxes
from .predictions import LabelScore, Prediction, Tag
from .rulecache import remembered

__all__ = [
    "DEFAULT_VIEWS",
    "MultiLabelRule",
    "best_cut",
    "check_views",
    "fit_rule",
    "label_scores",
    "predict_views",
    "reference_rule",
]

#: Views per image by default: the whole image and a 3x3 grid of half-size crops (benchmarks/multilabel.py, on
#: scenes of 2-3 objects and 64 labels: mean AP 0.45 with one view, 0.92 with 5, 0.93 with 10; micro-F1 0.36, 0.82
#: and 0.87).
DEFAULT_VIEWS = 10
_REFERENCE_VERSION = 2
_REFERENCE_SCENES = 48
_SEED = 20_261_207
_TEMPERATURES = (0.25, 0.5, 1.0)  # tried on the reference, as fractions of the model's logit scale

_lock = threading.Lock()
_memory: dict[str, MultiLabelRule] = {}


@dataclass(frozen=True)
class MultiLabelRule:
    """How an image's labels are decided, for one model, template set and number of views.

    Attributes:
        similarity: the logit of "none of these" in each view's softmax, as a cosine similarity.
        temperature: the softmax's scale (multiplies cosine similarities).
        cut: a label applies when its score (best view) is at least this.
        views: the views it was calibrated with.
        source: ``reference``, ``calibration`` (fitted on labelled images) or ``min-similarity``.
        f1: the micro-F1 of the rule on the data it was fitted on (0 for a cut given by hand).
        separable: False when no cut told present from absent labels there (micro-F1 under 0.5: a model that does
            not know the task, or random weights); the cut then keeps as many labels as the data held, rather than
            every label or none.
        label_cuts: cuts of their own for some labels (fitted on a user's labelled images), else None.
    """

    similarity: float
    temperature: float
    cut: float
    views: int
    source: str = "reference"
    f1: float = 0.0
    separable: bool = True
    label_cuts: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cuts(self, labels: Sequence[str]) -> np.ndarray:
        """The decision cut of each label: its own (fitted by ``calibrate --multi-label``) or the common one."""
        own = self.label_cuts or {}
        return np.array([own.get(label, self.cut) for label in labels], np.float64)


def check_views(views: int | None) -> int:
    """``views`` checked (None: :data:`DEFAULT_VIEWS`).

    Raises:
        ConfigError: not one of :data:`clipzero.images.VIEW_COUNTS`.
    """
    if views is None:
        return DEFAULT_VIEWS
    if views not in VIEW_COUNTS:
        raise ConfigError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views}")
    return int(views)


def label_scores(similarities: np.ndarray, rule: MultiLabelRule, sigmoid: tuple[float, float] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each image's score for each label and the view that gave it.

    Args:
        similarities: cosine similarities, (n, views, labels).
        rule: the calibrated rule.
        sigmoid: ``(logit_scale, logit_bias)`` of a SigLIP-family model: its own per-label sigmoid is used.

    Returns:
        (scores, best views), each (n, labels).
    """
    sims = np.asarray(similarities, np.float64)
    if sigmoid is not None:
        per_view = 1.0 / (1.0 + np.exp(-(sims * sigmoid[0] + sigmoid[1])))
    else:
        logits = np.concatenate([sims, np.full((*sims.shape[:-1], 1), rule.similarity)], axis=-1)
        logits = logits * rule.temperature
        logits -= logits.max(axis=-1, keepdims=True)
        shares = np.exp(logits)
        per_view = (shares / shares.sum(axis=-1, keepdims=True))[..., :-1]
    return per_view.max(axis=1), per_view.argmax(axis=1)


def best_cut(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(micro-F1, cut): the cut on ``scores`` with the best micro-F1 against ``truth`` (the middle of the gap)."""
    flat, wanted = scores.ravel(), truth.ravel().astype(bool)
    order = np.argsort(-flat, kind="stable")
    ranked, hits = flat[order], wanted[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    f1 = 2 * tp / (2 * tp + fp + (wanted.sum() - tp))
    f1[:-1][ranked[:-1] == ranked[1:]] = -1  # only cut between distinct scores
    best = int(np.argmax(f1))
    below = ranked[best + 1] if best + 1 < len(ranked) else ranked[best] - 1e-3
    return float(f1[best]), float((ranked[best] + below) / 2)


def fit_rule(similarities: np.ndarray, truth: np.ndarray, logit_scale: float, views: int,
             source: str = "calibration") -> MultiLabelRule:  # fmt: skip
    """The rule with the best micro-F1 on labelled images.

    Args:
        similarities: (n, views, labels) cosine similarities.
        truth: (n, labels), True where the label applies.
        logit_scale: the model's, for the temperatures tried.
        views: the views the similarities came from.

    Raises:
        ConfigError: no label applies anywhere, or every label applies everywhere.
    """
    truth = np.asarray(truth, bool)
    if not truth.any() or truth.all():
        raise ConfigError("fitting multi-label cuts needs labels that apply and labels that do not")
    _, similarity = best_cut(np.asarray(similarities).max(axis=1), truth)
    fitted = []
    for fraction in _TEMPERATURES:
        rule = MultiLabelRule(similarity, fraction * logit_scale, 0.5, views, source)
        f1, cut = best_cut(label_scores(similarities, rule)[0], truth)
        fitted.append((f1, -fraction, cut, rule))
    f1, _, cut, rule = max(fitted, key=lambda f: f[:2])
    if f1 < 0.5:  # nothing separates: keep the share of labels that applied (never all, never none)
        scores = label_scores(similarities, rule)[0]
        cut = float(np.quantile(scores, 1.0 - truth.mean()))
        return MultiLabelRule(rule.similarity, rule.temperature, round(cut, 6), views, source, round(f1, 4), False)
    return MultiLabelRule(rule.similarity, rule.temperature, round(cut, 6), views, source, round(f1, 4))


def predict_views(classifier: Any, vectors: np.ndarray, names: Sequence[str], rule: MultiLabelRule,
                  top_k: int = 5, min_similarity: float | None = None) -> list[Prediction]:  # fmt: skip
    """Multi-label predictions for images embedded as views.

    Args:
        classifier: a zero-shot classifier (its ``weights``, ``labels`` and encoder's ``logit_scale``/``logit_bias``).
        vectors: (n, views, dim) L2-normalised view embeddings, the whole image first (or (n, dim): one view).
        names: one per image.
        rule: the decision rule (:func:`reference_rule`, a calibration's, or one for ``min_similarity``).
        top_k: labels kept in ``predictions`` (by score), whatever the decision.
        min_similarity: decide by the best view's raw similarity instead of the score.
    """
    vectors = np.asarray(vectors, np.float32)
    vectors = vectors[:, None, :] if vectors.ndim == 2 else vectors
    similarities = vectors @ classifier.weights.T  # (n, views, labels)
    bias = classifier.encoder.logit_bias
    sigmoid = (float(classifier.encoder.logit_scale), float(bias)) if bias is not None else None
    scores, where = label_scores(similarities, rule, sigmoid)
    best = similarities.max(axis=1)
    boxes = view_boxes(vectors.shape[1])
    cut = 0.5 if sigmoid is not None and rule.source == "reference" else rule.cuts(classifier.labels)
    chosen = best >= min_similarity if min_similarity is not None else scores >= cut
    results = []
    for row, name in enumerate(names):
        order = np.argsort(-scores[row], kind="stable")
        tags = [Tag(classifier.labels[j], round(float(scores[row, j]), 6), float(best[row, j]),
                    boxes[int(where[row, j])]) for j in order if chosen[row, j]]  # fmt: skip
        top = [LabelScore(classifier.labels[j], float(scores[row, j]), float(best[row, j]))
               for j in order[:top_k]]  # fmt: skip
        results.append(Prediction(name, tags[0].label if tags else None, top, tags=tags))
    return results


# -- the reference task --------------------------------------------------------------------------------------------
def reference_rule(encoder: Any, templates_hash: str, class_embeddings: Callable[[list[str]], np.ndarray],
                   views: int, language: str = "en") -> MultiLabelRule:  # fmt: skip
    """The default rule of a model, template set and view count: from memory, from disk, else computed on the
    reference task (see the module docs).

    Args:
        encoder: the model (its ``id`` keys the rule; it encodes the reference scenes).
        templates_hash: the template set's content hash.
        class_embeddings: labels -> their class embeddings with the template set, (n, dim) L2-normalised.
        views: the number of views.
        language: the template set's language (``zh``: the reference labels in Chinese).
    """
    language = "zh" if language == "zh" else "en"
    key = f"{encoder.id}|{templates_hash}|{language}|views{views}|v{_REFERENCE_VERSION}"
    return remembered("multilabel.json", key, _memory, _lock, MultiLabelRule,
                      lambda: _compute(encoder, class_embeddings, views, language))


def reference_scenes(count: int, seed: int, n_objects: tuple[int, ...] = (2, 3), *,
                     allowed: list[tuple[str, str]] | None = None, style: Any = None,
                     sizes: tuple[int, ...] = (64, 96)) -> list[tuple[Any, set[int]]]:  # fmt: skip
    """(image, indices of the combinations present) for ``count`` shapes-world scenes of several objects; the
    indices are into :func:`clipzero.synthetic.world.all_combinations`. ``allowed``: the combinations objects may
    take (default all); ``style``: a :class:`~clipzero.synthetic.world.Style`; ``sizes``: image sides to pick from."""
    from .synthetic.world import all_combinations, render, sample_scene

    combos = all_combinations()
    rng = random.Random(seed)
    scenes = []
    for _ in range(count):
        scene = sample_scene(rng, size=rng.choice(sizes), n_objects=rng.choice(n_objects),
                             allowed=allowed or combos, style=style)  # fmt: skip
        scenes.append((render(scene), {combos.index((o.colour, o.shape)) for o in scene.objects}))
    return scenes


def _compute(encoder: Any, class_embeddings: Callable[[list[str]], np.ndarray], views: int,
             language: str) -> MultiLabelRule:  # fmt: skip
    from .pipeline import embed_all
    from .synthetic.world import all_combinations, combination_label

    combos = all_combinations()
    weights = class_embeddings([combination_label(c, s, language) for c, s in combos])  # (64, dim)
    scenes = reference_scenes(_REFERENCE_SCENES, _SEED)
    items = embed_all([image for image, _ in scenes], encoder, workers=0, views=views)
    vectors = np.stack([np.asarray(item.vector).reshape(views, -1) for item in items])  # (48, views, dim)
    truth = np.zeros((len(scenes), len(combos)), bool)
    for row, (_, present) in enumerate(scenes):
        truth[row, sorted(present)] = True
    return fit_rule(vectors @ weights.T, truth, float(encoder.logit_scale), views, "reference")
