"""Calibrated confidence and a rejection cut fitted on the user's own labelled images (``clipzero calibrate``).

Zero-shot probabilities come from the model's logit scale, which was fitted on its pretraining data: on a user's
task they are often over- or under-confident. A **temperature** T, fitted by minimising the negative
log-likelihood on a small labelled set held apart from the test images, divides the logits so that a score of 0.8
means right about 80% of the time. Given images that fit none of the labels too (``--out-of-set DIR``), the
**rejection cut** for ``reject="auto"`` is fitted on them as well, replacing the reference task's
(:mod:`clipzero.rejection`).

A calibration file is JSON: the model it was fitted for (a classifier of another model refuses it), the
temperature, the rejection rule (or null), the multi-label rule (``calibrate --multi-label``; or null), and what it
was fitted on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AdapterError
from .multilabel import MultiLabelRule
from .rejection import RejectionRule, rule_from_scores

__all__ = ["Calibration", "auroc", "fit_and_measure", "fit_temperature", "rejection_figures"]

_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature (and rejection rule) for one model.

    Attributes:
        model_id: the model it was fitted for.
        temperature: logits are divided by it before the softmax (1: unchanged).
        rule: the fitted rejection rule, or None (``reject="auto"`` then keeps the reference rule).
        fitted_on: what it was fitted on (dataset, images, classes, template set) and the figures measured.
        multi_label: the multi-label rule fitted by ``calibrate --multi-label`` (its views, cuts and each label's
            own cut), or None (multi-label tagging then keeps the reference rule).
    """

    model_id: str
    temperature: float = 1.0
    rule: RejectionRule | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)
    multi_label: MultiLabelRule | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file atomically; returns its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": "clipzero-calibration", "version": _VERSION, **asdict(self)}
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], model_id: str | None = None) -> Calibration:
        """Read a calibration file, checked against ``model_id`` when given.

        Raises:
            AdapterError: missing, not a calibration file, or fitted for another model.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"calibration file {path}: cannot be read ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != "clipzero-calibration":
            raise AdapterError(f"{path} is not a clipzero calibration file (make one with `clipzero calibrate`)")
        try:
            rule = RejectionRule(**data["rule"]) if data.get("rule") else None
            multi = MultiLabelRule(**data["multi_label"]) if data.get("multi_label") else None
            found = cls(str(data["model_id"]), float(data["temperature"]), rule, dict(data.get("fitted_on") or {}),
                        multi)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise AdapterError(f"calibration file {path} is damaged: {exc}") from exc
        if not math.isfinite(found.temperature) or found.temperature <= 0:
            raise AdapterError(f"calibration file {path}: temperature must be positive, got {found.temperature}")
        if model_id is not None and found.model_id != model_id:
            raise AdapterError(f"calibration file {path} was fitted for model {found.model_id!r}, not {model_id!r}")
        return found


def _nll(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_z - scaled[np.arange(len(truth)), truth]))


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``truth`` (golden-section search on log T,
    where the loss has one minimum), between 0.05 and 20."""
    logits, truth = np.asarray(logits, np.float64), np.asarray(truth, np.int64)
    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = _nll(logits, truth, math.exp(a)), _nll(logits, truth, math.exp(b))
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _nll(logits, truth, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _nll(logits, truth, math.exp(b))
    return float(math.exp((low + high) / 2))


def auroc(fits: np.ndarray, misses: np.ndarray) -> float:
    """P(a fit scores above a miss), ties counted half: how well a score tells the two apart."""
    greater = (fits[:, None] > misses[None, :]).mean()
    return float(greater + 0.5 * (fits[:, None] == misses[None, :]).mean())


def rejection_figures(similarities: np.ndarray, truth: np.ndarray, outside: np.ndarray, rule: RejectionRule,
                      ) -> dict[str, float]:  # fmt: skip
    """How a rule does on a test set: AUROC of the best-label similarity (in-set against out-of-set), the share of
    in-set images kept with their correct label, and the share of out-of-set images rejected.

    Args:
        similarities: (n, n_classes) of the in-set test images.
        truth: (n,) their classes.
        outside: (m, n_classes) of the out-of-set test images.
        rule: the cut.
    """
    best_in, best_out = similarities.max(axis=1), outside.max(axis=1)
    correct = similarities.argmax(axis=1) == truth
    return {
        "threshold": round(rule.threshold, 4),
        "auroc": round(auroc(best_in, best_out), 4),
        "in_set_kept_correct": round(float(np.mean(correct & (best_in >= rule.threshold))), 4),
        "in_set_correct_without_rejection": round(float(np.mean(correct)), 4),
        "out_of_set_rejected": round(float(np.mean(best_out < rule.threshold)), 4),
    }


def fit_and_measure(classifier: Any, fit_set: Any, test_set: Any, outside: np.ndarray | None = None,
                    ) -> tuple[float, RejectionRule | None, dict[str, Any]]:  # fmt: skip
    """Fit a temperature on ``fit_set`` (and a rejection cut on it and the first half of ``outside``), and measure
    both on ``test_set`` (and the second half): what ``clipzero calibrate`` and ``clipzero eval`` report.

    Args:
        classifier: a zero-shot classifier of the task's classes.
        fit_set, test_set: embedded labelled images (:class:`~clipzero.finetune.run.EmbeddedSet`), disjoint.
        outside: (m, dim) embeddings of images that fit none of the classes, or None.

    Returns:
        (temperature, the fitted rule or None, figures: images, temperature, top-1, ECE before and after, and with
        ``outside`` the rejection figures of the fitted rule and of the reference one).

    Raises:
        DatasetError: fewer than two out-of-set images.
    """
    from .errors import DatasetError
    from .finetune.metrics import expected_calibration_error, softmax

    fit_logits, fit_similarities = classifier.logits(fit_set.vectors)
    test_logits, test_similarities = classifier.logits(test_set.vectors)
    temperature = fit_temperature(fit_logits, fit_set.labels)
    before, after = softmax(test_logits), softmax(test_logits / temperature)
    figures: dict[str, Any] = {
        "fit_images": len(fit_set.paths),
        "test_images": len(test_set.paths),
        "temperature": round(temperature, 4),
        "top1": round(float(np.mean(before.argmax(axis=1) == test_set.labels)), 4),
        "ece_before": round(expected_calibration_error(before, test_set.labels), 4),
        "ece_after": round(expected_calibration_error(after, test_set.labels), 4),
    }
    if outside is None:
        return temperature, None, figures
    if len(outside) < 2:
        raise DatasetError("the out-of-set folder needs at least two readable images (half to fit, half to test)")
    half = len(outside) // 2
    outside_similarities = classifier.logits(outside)[1]
    rule = rule_from_scores(fit_similarities.max(axis=1), outside_similarities[:half].max(axis=1), "calibration")
    test_outside = outside_similarities[half:]
    figures["rejection"] = {
        "out_of_set_fit_images": half,
        "out_of_set_test_images": len(outside) - half,
        "calibrated": rejection_figures(test_similarities, test_set.labels, test_outside, rule),
        "reference": rejection_figures(test_similarities, test_set.labels, test_outside,
                                       classifier.rejection_rule("auto")),
    }
    return temperature, rule, figures
