"""Linear probe: multinomial logistic regression on frozen image embeddings.

The head is ``logits = W x + b`` over L2-normalised embeddings. Started from the zero-shot classifier (``W0`` the
label prompt embeddings times the model's logit scale), the L2 penalty pulls ``W`` towards ``W0`` rather than
towards zero, so with few shots the head stays close to zero-shot where the data says little. The penalty's
strength is chosen on a selection set that is not trained on. Fitting is full-batch L-BFGS: a few hundred
embeddings per class fit in well under a second.

A saved head is one small safetensors file with its classes and the model it belongs to; ``clipzero classify``,
``tag`` and ``serve`` load it with ``--head FILE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AdapterError

__all__ = ["LAMBDAS", "LinearHead", "train_linear_probe"]

FORMAT = "clipzero-linear-head/1"
LAMBDAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # penalty per class row, searched on the selection set


@dataclass
class LinearHead:
    """A trained linear classifier over one model's image embeddings.

    Attributes:
        weight: float32 (n_classes, dim).
        bias: float32 (n_classes,).
        classes: the label of each row.
        model_id: the Encoder.id whose embeddings it was trained on.
        info: how it was trained (penalty, selection accuracy, shots).
    """

    weight: np.ndarray
    bias: np.ndarray
    classes: list[str]
    model_id: str
    info: dict[str, Any] = field(default_factory=dict)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, dim) L2-normalised embeddings -> float64 logits (n, n_classes)."""
        x = np.asarray(embeddings, dtype=np.float64)
        return x @ self.weight.astype(np.float64).T + self.bias.astype(np.float64)

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        return self.logits(embeddings).argmax(axis=1)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the head as a safetensors file (the classes and model id in its metadata)."""
        from safetensors.numpy import save_file

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format": FORMAT,
            "classes": json.dumps(self.classes, ensure_ascii=False),
            "model_id": self.model_id,
            "info": json.dumps(self.info),
        }
        tensors = {"weight": np.ascontiguousarray(self.weight, np.float32), "bias": self.bias.astype(np.float32)}
        save_file(tensors, str(target), metadata=metadata)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearHead:
        """Read a head written by :meth:`save`.

        Raises:
            AdapterError: missing, not a safetensors file, or not a clipzero linear head.
        """
        from safetensors import safe_open

        source = Path(path)
        if not source.is_file():
            raise AdapterError(f"linear head {source}: no such file")
        try:
            with safe_open(str(source), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != FORMAT:
                    raise AdapterError(
                        f"linear head {source}: not a clipzero linear head (format {metadata.get('format')!r})"
                    )
                weight, bias = handle.get_tensor("weight"), handle.get_tensor("bias")
        except AdapterError:
            raise
        except Exception as exc:
            raise AdapterError(f"linear head {source}: cannot read it: {exc}") from exc
        classes = json.loads(metadata["classes"])
        if weight.shape[0] != len(classes) or bias.shape != (len(classes),):
            raise AdapterError(f"linear head {source}: {weight.shape[0]} rows for {len(classes)} classes")
        return cls(weight, bias, classes, metadata.get("model_id", ""), json.loads(metadata.get("info", "{}")))


def _fit(x: Any, y: Any, w0: Any, lam: float, max_iter: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    weight = w0.clone().requires_grad_(True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + lam * ((weight - w0) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy().astype(np.float32), bias.detach().numpy().astype(np.float32)


def train_linear_probe(
    train_x: np.ndarray,
    train_y: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    *,
    model_id: str,
    select_x: np.ndarray | None = None,
    select_y: Sequence[int] | np.ndarray | None = None,
    init: np.ndarray | None = None,
    lambdas: Sequence[float] = LAMBDAS,
    max_iter: int = 200,
) -> LinearHead:
    """Fit a linear head, choosing the penalty on a selection set.

    Args:
        train_x: float32 (n, dim) L2-normalised embeddings to learn from.
        train_y: their class indices.
        classes: class names (row order of the head).
        model_id: the model the embeddings come from.
        select_x, select_y: held-apart embeddings to choose the penalty on; without them, half of each class of
            the training set is held apart for the choice, and the final head is refit on all of it.
        init: (n_classes, dim) starting weights, usually the zero-shot class embeddings times the logit scale;
            the penalty pulls towards them. None: start from (and pull towards) zero.
        lambdas: penalties to try.
        max_iter: L-BFGS iterations per fit.

    Returns:
        The head refit on all training embeddings with the chosen penalty.
    """
    import torch

    n_classes = len(classes)
    x = torch.as_tensor(np.asarray(train_x, np.float64))
    y = torch.as_tensor(np.asarray(train_y, np.int64))
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise AdapterError(f"linear probe: {x.shape[0]} embeddings for {y.shape[0]} labels")
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise AdapterError(f"linear probe: labels must be class indices below {n_classes}")
    if init is not None and np.asarray(init).shape != (n_classes, x.shape[1]):
        raise AdapterError(f"linear probe: init has shape {np.asarray(init).shape}, need {(n_classes, x.shape[1])}")
    w0 = (
        torch.as_tensor(np.asarray(init, np.float64))
        if init is not None
        else torch.zeros(n_classes, x.shape[1], dtype=torch.float64)
    )
    if select_x is not None and select_y is not None and len(select_y):
        fit_x, fit_y = x, y
        val_x = torch.as_tensor(np.asarray(select_x, np.float64))
        val_y = np.asarray(select_y, np.int64)
        selection = "selection set"
    else:  # hold half of each class apart (every other example of it) to choose the penalty
        labels = y.numpy()
        held = np.zeros(len(labels), dtype=bool)
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            held[rows[1::2]] = True
        if not held.any() or held.all():
            held[:] = False
        fit_x, fit_y = x[torch.as_tensor(~held)], y[torch.as_tensor(~held)]
        val_x, val_y = x[torch.as_tensor(held)], labels[held]
        selection = "half of the training set"
    scores = {}
    if len(val_y):
        for lam in lambdas:
            weight, bias = _fit(fit_x, fit_y, w0, lam, max_iter, n_classes)
            logits = val_x.numpy() @ weight.T.astype(np.float64) + bias
            accuracy = float((logits.argmax(axis=1) == val_y).mean())
            shifted = logits - logits.max(axis=1, keepdims=True)
            nll = float(-(shifted[np.arange(len(val_y)), val_y] - np.log(np.exp(shifted).sum(axis=1))).mean())
            scores[lam] = (accuracy, -nll)
        best = max(lambdas, key=lambda lam: scores[lam])
    else:
        best = 1e-3
    weight, bias = _fit(x, y, w0, best, max_iter, n_classes)
    info = {
        "method": "linear-probe",
        "penalty": best,
        "selection": selection,
        "selection_accuracy": scores[best][0] if scores else None,
        "train_images": int(x.shape[0]),
        "init": "zero-shot" if init is not None else "zero",
    }
    return LinearHead(weight, bias, list(classes), model_id, info)
