"""A training-free few-shot cache adapter, in the spirit of Tip-Adapter.

The labelled examples' embeddings are the keys of a FAISS inner-product index. An image's logits are its
zero-shot logits plus a vote of its nearest labelled neighbours, each weighted by ``exp(-beta * (1 - cosine))``:

    logits = logit_scale * x W_text^T + alpha * sum_over_neighbours exp(-beta (1 - x.k)) onehot(label(k))

``alpha`` (how much the cache counts against zero-shot) and ``beta`` (how sharply it prefers the closest
neighbours) are chosen on a selection set, or leave-one-out on the examples themselves. Nothing is trained, so
adding examples is adding rows to the index.
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

__all__ = ["ALPHAS", "BETAS", "CacheAdapter", "fit_cache_adapter"]

FORMAT = "clipzero-cache-adapter/1"
ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BETAS = (1.0, 2.0, 3.5, 5.5, 8.0, 12.0)


@dataclass
class CacheAdapter:
    """Zero-shot class embeddings plus a FAISS cache of labelled example embeddings.

    Attributes:
        text_weights: float32 (n_classes, dim), the zero-shot class embeddings.
        logit_scale: the model's logit scale.
        index: a FAISS inner-product index over the examples' embeddings.
        labels: int64 (n_examples,), the class of each index row.
        classes: class names.
        model_id: the model whose embeddings these are.
        alpha, beta: the cache's weight and sharpness.
        neighbours: how many nearest examples vote.
    """

    text_weights: np.ndarray
    logit_scale: float
    index: Any
    labels: np.ndarray
    classes: list[str]
    model_id: str
    alpha: float = 1.0
    beta: float = 5.5
    neighbours: int = 64
    info: dict[str, Any] = field(default_factory=dict)

    def _votes(self, embeddings: np.ndarray, beta: float, skip_self: bool = False) -> np.ndarray:
        """(n, n_classes) affinity-weighted neighbour votes."""
        x = np.ascontiguousarray(embeddings, np.float32)
        k = min(self.neighbours + int(skip_self), self.index.ntotal)
        similarity, rows = self.index.search(x, k)  # (n, k) each
        if skip_self:
            similarity, rows = similarity[:, 1:], rows[:, 1:]
        weights = np.exp(-beta * (1.0 - similarity.astype(np.float64)))
        weights[rows < 0] = 0.0
        votes = np.zeros((x.shape[0], len(self.classes)), np.float64)
        np.add.at(votes, (np.arange(x.shape[0])[:, None], self.labels[np.maximum(rows, 0)]), weights)
        return votes

    def zero_shot_logits(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, np.float64)
        return x @ self.text_weights.astype(np.float64).T * self.logit_scale

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, dim) L2-normalised embeddings -> float64 logits (n, n_classes)."""
        return self.zero_shot_logits(embeddings) + self.alpha * self._votes(embeddings, self.beta)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the adapter as a folder: ``cache.faiss`` (the keys), ``text.npy`` and ``adapter.json``."""
        import faiss

        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(target / "cache.faiss"))
        np.save(target / "text.npy", self.text_weights.astype(np.float32))
        meta = {
            "format": FORMAT,
            "classes": self.classes,
            "labels": self.labels.tolist(),
            "model_id": self.model_id,
            "logit_scale": self.logit_scale,
            "alpha": self.alpha,
            "beta": self.beta,
            "neighbours": self.neighbours,
            "info": self.info,
        }
        (target / "adapter.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        return target

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> CacheAdapter:
        import faiss

        source = Path(folder)
        meta_file = source / "adapter.json"
        if not meta_file.is_file():
            raise AdapterError(f"cache adapter {source}: no adapter.json (not a clipzero cache adapter folder)")
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("format") != FORMAT:
                raise AdapterError(f"cache adapter {source}: unknown format {meta.get('format')!r}")
            index = faiss.read_index(str(source / "cache.faiss"))
            text = np.load(source / "text.npy")
        except AdapterError:
            raise
        except Exception as exc:
            raise AdapterError(f"cache adapter {source}: cannot read it: {exc}") from exc
        labels = np.asarray(meta["labels"], np.int64)
        if index.ntotal != len(labels) or text.shape[0] != len(meta["classes"]):
            raise AdapterError(
                f"cache adapter {source}: its files do not agree ({index.ntotal} keys, {len(labels)} labels)"
            )
        return cls(
            text,
            float(meta["logit_scale"]),
            index,
            labels,
            list(meta["classes"]),
            meta["model_id"],
            float(meta["alpha"]),
            float(meta["beta"]),
            int(meta["neighbours"]),
            meta.get("info", {}),
        )


def fit_cache_adapter(
    keys: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    text_weights: np.ndarray,
    classes: Sequence[str],
    *,
    logit_scale: float,
    model_id: str,
    select_x: np.ndarray | None = None,
    select_y: Sequence[int] | np.ndarray | None = None,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
    neighbours: int = 64,
) -> CacheAdapter:
    """Build the cache from labelled embeddings and choose ``alpha`` and ``beta``.

    With a selection set the pair with the best selection accuracy wins (ties: the smaller alpha, closer to
    zero-shot); without one, each example is scored leave-one-out against the others.
    """
    import faiss

    keys = np.ascontiguousarray(keys, np.float32)
    labels = np.asarray(labels, np.int64)
    if keys.ndim != 2 or keys.shape[0] != labels.shape[0] or keys.shape[0] == 0:
        raise AdapterError(f"cache adapter: {keys.shape[0]} embeddings for {labels.shape[0]} labels")
    if text_weights.shape != (len(classes), keys.shape[1]):
        raise AdapterError(f"cache adapter: text weights {text_weights.shape} for {len(classes)} classes")
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    adapter = CacheAdapter(
        np.asarray(text_weights, np.float32),
        float(logit_scale),
        index,
        labels,
        list(classes),
        model_id,
        neighbours=neighbours,
    )
    if select_x is not None and select_y is not None and len(select_y):
        x, y, skip_self, selection = np.asarray(select_x, np.float32), np.asarray(select_y), False, "selection set"
    else:
        x, y, skip_self, selection = keys, labels, True, "leave-one-out"
    base = adapter.zero_shot_logits(x)
    best = (float((base.argmax(axis=1) == y).mean()), 0.0, 0.0, 0.0)  # (accuracy, -alpha, alpha, beta)
    for beta in betas:
        votes = adapter._votes(x, beta, skip_self=skip_self)
        for alpha in alphas:
            accuracy = float(((base + alpha * votes).argmax(axis=1) == y).mean())
            best = max(best, (accuracy, -alpha, alpha, beta))
    adapter.alpha, adapter.beta = best[2], best[3] or BETAS[0]
    adapter.info = {
        "method": "cache",
        "selection": selection,
        "selection_accuracy": best[0],
        "zero_shot_selection_accuracy": float((base.argmax(axis=1) == y).mean()),
        "examples": int(keys.shape[0]),
    }
    return adapter
