"""Multi-label sets: reading one, measuring multi-label tagging on it (``clipzero eval --multi-label``) and fitting
its cuts (``clipzero calibrate --multi-label``).

A multi-label set is either a CSV with a ``path`` (or ``image``) column and a ``labels`` column (labels joined by
``;``, a ``;`` in a label escaped as ``\\;``; an empty cell: none of the labels apply), paths relative to the CSV's
folder; or a folder of label folders, ``DIR/<label>/<image>``, where the same picture (by content) in several
folders is one image with several labels.

Calibration splits the images in two with a seed: the cuts are fitted on one part and measured on the other, so
the figures it reports are on images the cuts never saw.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..images import find_images
from ..multilabel import MultiLabelRule, best_cut, fit_rule, label_scores
from ..outputs import split_labels

__all__ = ["MultiLabelSet", "calibrate_multilabel", "evaluate_multilabel", "load_multilabel", "measure"]


@dataclass
class MultiLabelSet:
    """Images and the labels that apply to each.

    Attributes:
        paths: the image files.
        labels: every label of the set, sorted.
        truth: (images, labels), True where the label applies.
    """

    paths: list[str]
    labels: list[str]
    truth: np.ndarray

    def subset(self, rows: list[int]) -> MultiLabelSet:
        return MultiLabelSet([self.paths[i] for i in rows], self.labels, self.truth[rows])


def load_multilabel(data: str | Path, labels: list[str] | None = None) -> MultiLabelSet:
    """Read a multi-label set (see the module docs); ``labels``, when given, are the labels scored (labels of the
    set outside them are ignored).

    Raises:
        DatasetError: not a CSV or a folder, a missing column or file, or fewer than two images.
    """
    source = Path(data)
    if source.is_file() and source.suffix.lower() == ".csv":
        pairs = _from_csv(source)
    elif source.is_dir():
        pairs = _from_folders(source)
    else:
        raise DatasetError(f"{data}: a multi-label set is a CSV (path,labels) or a folder of label folders")
    if len(pairs) < 2:
        raise DatasetError(f"{data} holds {len(pairs)} image(s): a multi-label set needs at least two")
    chosen = sorted(labels) if labels else sorted({label for _, found in pairs for label in found})
    index = {label: j for j, label in enumerate(chosen)}
    truth = np.zeros((len(pairs), len(chosen)), bool)
    for row, (_, found) in enumerate(pairs):
        truth[row, [index[label] for label in found if label in index]] = True
    return MultiLabelSet([path for path, _ in pairs], chosen, truth)


def _from_csv(path: Path) -> list[tuple[str, set[str]]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = next((c for c in ("path", "image") if rows and c in rows[0]), None)
    if column is None or "labels" not in rows[0]:
        raise DatasetError(f"{path}: expected the columns path (or image) and labels")
    pairs = []
    for number, row in enumerate(rows, start=2):
        image = (path.parent / row[column]).resolve()
        if not image.is_file():
            raise DatasetError(f"{path}, line {number}: image {row[column]} not found")
        pairs.append((str(image), {label.strip() for label in split_labels(row["labels"] or "") if label.strip()}))
    return pairs


def _from_folders(root: Path) -> list[tuple[str, set[str]]]:
    by_content: dict[str, tuple[str, set[str]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in find_images([str(folder)], recursive=True):
            digest = hashlib.sha256(Path(image).read_bytes()).hexdigest()
            by_content.setdefault(digest, (image, set()))[1].add(folder.name)
    return list(by_content.values())


def measure(similarities: np.ndarray, data: MultiLabelSet, rule: MultiLabelRule) -> dict[str, Any]:
    """mAP, micro- and macro-F1, exact-set accuracy and a per-label table for scores from ``rule``."""
    scores = label_scores(similarities, rule)[0]
    chosen = scores >= rule.cuts(data.labels)
    truth = data.truth
    table = []
    for j, label in enumerate(data.labels):
        positives = int(truth[:, j].sum())
        tp = int((chosen[:, j] & truth[:, j]).sum())
        given = int(chosen[:, j].sum())
        f1 = 2 * tp / (given + positives) if given + positives else 0.0
        ap = round(_average_precision(scores[:, j], truth[:, j]), 4) if positives else None
        table.append({"label": label, "images": positives, "given": given, "precision": _ratio(tp, given),
                      "recall": _ratio(tp, positives), "f1": round(f1, 4), "ap": ap})  # fmt: skip
    tp = int((chosen & truth).sum())
    with_images = [row for row in table if row["images"]]
    return {
        "images": len(data.paths),
        "labels": len(data.labels),
        "map": round(float(np.mean([row["ap"] for row in with_images])), 4) if with_images else None,
        "micro_f1": round(2 * tp / max(1, int(chosen.sum()) + int(truth.sum())), 4),
        "macro_f1": round(float(np.mean([row["f1"] for row in with_images])), 4) if with_images else None,
        "exact_set": round(float((chosen == truth).all(axis=1).mean()), 4),
        "per_label": table,
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1, hits.sum()))


def view_similarities(classifier: Any, data: MultiLabelSet, views: int, say: Any = None) -> np.ndarray:
    """(images, views, labels) similarities of the set's images to the classifier's labels.

    Raises:
        DatasetError: an image cannot be read (the set must be complete to be measured).
    """
    from ..pipeline import embed_all

    if say is not None:
        say(f"embedding {len(data.paths)} images x {views} views")
    items = embed_all(data.paths, classifier.encoder, views=views)
    bad = [item for item in items if item.vector is None]
    if bad:
        raise DatasetError(f"{bad[0].name}: {bad[0].error} ({len(bad)} unreadable image(s) in the set)")
    vectors = np.stack([np.asarray(item.vector).reshape(views, -1) for item in items])
    return np.asarray(vectors @ classifier.weights.T)


def evaluate_multilabel(classifier: Any, data: MultiLabelSet, views: int, say: Any = None) -> dict[str, Any]:
    """The multi-label figures of ``classifier`` on the whole set, with its rule (a calibration's or the
    reference task's)."""
    similarities = view_similarities(classifier, data, views, say)
    rule = classifier.multi_label_rule(views)
    return {"views": views, "rule": rule.source, **measure(similarities, data, rule)}


def calibrate_multilabel(classifier: Any, data: MultiLabelSet, views: int, seed: int = 0, say: Any = None
                         ) -> tuple[MultiLabelRule, dict[str, Any]]:  # fmt: skip
    """Fit the cuts on half of the set (and a cut of its own for each label with at least 4 images on each side
    there), and measure the fitted and the reference rules on the other half.

    Raises:
        DatasetError: too few images to split, or no label applies in the fitting half.
    """
    if len(data.paths) < 8:
        raise DatasetError(f"{len(data.paths)} images: calibrating needs at least 8 (half to fit, half to test)")
    rows = list(range(len(data.paths)))
    random.Random(seed).shuffle(rows)
    fit_rows, test_rows = sorted(rows[: len(rows) // 2]), sorted(rows[len(rows) // 2 :])
    similarities = view_similarities(classifier, data, views, say)
    fit, test = data.subset(fit_rows), data.subset(test_rows)
    if not fit.truth.any():
        raise DatasetError("no label applies to any image of the fitting half: check the set's labels")
    rule = fit_rule(similarities[fit_rows], fit.truth, float(classifier.encoder.logit_scale), views)
    scores = label_scores(similarities[fit_rows], rule)[0]
    own = {}
    for j, label in enumerate(data.labels):
        wanted = fit.truth[:, j]
        if 4 <= wanted.sum() <= len(wanted) - 4:
            own[label] = round(best_cut(scores[:, j], wanted)[1], 6)
    rule = MultiLabelRule(rule.similarity, rule.temperature, rule.cut, views, "calibration", rule.f1,
                          rule.separable, own or None)  # fmt: skip
    report = {"views": views, "fit_images": len(fit_rows), "test_images": len(test_rows), "labels_with_own_cut":
              len(own), "calibrated": measure(similarities[test_rows], test, rule),
              "reference": measure(similarities[test_rows], test, classifier.multi_label_rule(views))}  # fmt: skip
    return rule, report
