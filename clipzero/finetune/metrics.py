"""Evaluation metrics: top-k accuracy, per-class recall, expected calibration error, confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["confusion_matrix", "evaluate_probabilities", "expected_calibration_error", "save_confusion_png"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def top_k_accuracy(probabilities: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the k highest scores (ties broken by class order)."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean()) if len(truth) else 0.0


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between top-1 confidence and accuracy over equal-width bins."""
    if not len(truth):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(float(correct[members].mean()) - float(confidence[members].mean()))
    return float(total)


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def evaluate_probabilities(
    probabilities: np.ndarray, truth: Sequence[int] | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """The report's numbers for one method: top-1, top-5, per-class recall, ECE, the confusion matrix."""
    truth_arr = np.asarray(truth, np.int64)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(predicted, truth_arr, len(classes))
    support = matrix.sum(axis=1)
    recall = {name: (float(matrix[i, i] / support[i]) if support[i] else None) for i, name in enumerate(classes)}
    return {
        "images": len(truth_arr),
        "top1": top_k_accuracy(probabilities, truth_arr, 1),
        "top5": top_k_accuracy(probabilities, truth_arr, 5),
        "ece": expected_calibration_error(probabilities, truth_arr),
        "per_class_recall": recall,
        "confusion": matrix.tolist(),
    }


def save_confusion_png(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str], title: str) -> Path:
    """Draw a confusion matrix (rows normalised to recall) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, np.float64)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    side = min(4 + 0.28 * n, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 80:
        ax.set_xticks(range(n), labels=list(classes), rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels=list(classes), fontsize=7)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target
