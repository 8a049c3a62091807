"""FAISS index kinds for the embedding store, and their atomic persistence.

Kinds are data (a registry), not ``if`` chains: ``flat`` (exact inner product), ``hnsw`` (graph, no training) and
``ivf`` (inverted lists trained on a sample). ``auto`` is exact below :data:`AUTO_THRESHOLD` images and HNSW above.
Every kind sits inside an ``IndexIDMap2`` whose ids are the store's SQLite row ids. Arrays handed to FAISS are
float32 and C-contiguous (a float64 from numpy 2 arithmetic makes FAISS raise).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

AUTO_THRESHOLD = 50_000
INDEX_FILE = "index.faiss"
#: The recall@10 the search settings are tuned for (see :func:`auto_tune`).
RECALL_TARGET = 0.95
_EF_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def _flat(dim: int, count: int, sample: np.ndarray | None) -> Any:
    import faiss

    return faiss.IndexFlatIP(dim)


def _hnsw(dim: int, count: int, sample: np.ndarray | None) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = 64
    return index


def ivf_lists(count: int) -> int:
    """Inverted lists for ``count`` vectors: about 4 * sqrt(n), at least 1, with 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(max(count, 1))), max(1, count // 39)))


def _ivf(dim: int, count: int, sample: np.ndarray | None) -> Any:
    import faiss

    nlist = ivf_lists(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if sample is None or len(sample) < nlist:
        raise ValueError(f"an IVF index of {nlist} lists needs at least {nlist} training vectors")
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = max(16, nlist // 4)  # recall@10 >= 0.95 on clustered vectors (benchmarks/store_search.py)
    return index


_KINDS: dict[str, Callable[[int, int, np.ndarray | None], Any]] = {"flat": _flat, "hnsw": _hnsw, "ivf": _ivf}


@dataclass(frozen=True)
class IndexSpec:
    """An index kind by name: ``auto``, ``flat``, ``hnsw`` or ``ivf``."""

    kind: str

    @classmethod
    def parse(cls, text: str) -> IndexSpec:
        from ..errors import StoreError

        if text != "auto" and text not in _KINDS:
            raise StoreError(f"unknown index kind {text!r}: use auto, {', '.join(_KINDS)}")
        return cls(text)

    def resolve(self, count: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "flat" if count < AUTO_THRESHOLD else "hnsw"

    def needs_training(self, count: int) -> bool:
        return self.resolve(count) == "ivf" and count > 0

    def tune(self, index: Any, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Apply search-time settings to whichever kind ``index`` is (None keeps the index's own, tuned one)."""
        inner = _inner(index)
        if nprobe is not None and hasattr(inner, "nprobe"):
            inner.nprobe = nprobe
        if ef_search is not None and hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = ef_search

    def describe(self, index: Any) -> dict[str, Any]:
        inner = _inner(index)
        kind = "hnsw" if hasattr(inner, "hnsw") else "ivf" if hasattr(inner, "nprobe") else "flat"
        out: dict[str, Any] = {"kind": kind, "requested": self.kind, "vectors": int(index.ntotal)}
        if kind == "ivf":
            out.update(nlist=int(inner.nlist), nprobe=int(inner.nprobe))
        if kind == "hnsw":
            out.update(ef_search=int(inner.hnsw.efSearch))
        return out

    def wants_rebuild(self, index: Any, count: int) -> bool:
        """True when the collection outgrew its index: ``auto`` crossing the threshold, a flat stand-in for IVF
        that now has enough vectors to train, or IVF lists trained for a quarter of today's size or less."""
        described = self.describe(index)
        target = self.resolve(count)
        if target == "ivf" and described["kind"] == "ivf":
            return ivf_lists(count) > 2 * int(described["nlist"])
        return bool(described["kind"] != target and (target != "ivf" or count >= 39))


def search_index(index: Any, queries: np.ndarray, k: int, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` nearest stored vectors to each query; ``exact`` searches every vector (every IVF
    list; HNSW's stored vectors one by one) instead of the approximate path, as a check on it."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    inner = _inner(index)
    if not exact or not (hasattr(inner, "nprobe") or hasattr(inner, "hnsw")):
        return index.search(queries, k)
    if hasattr(inner, "hnsw"):
        import faiss

        scores, positions = faiss.downcast_index(inner.storage).search(queries, k)
        ids = index_ids(index)
        return scores, np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
    saved, inner.nprobe = inner.nprobe, inner.nlist
    try:
        return index.search(queries, k)
    finally:
        inner.nprobe = saved


def auto_tune(index: Any, queries: np.ndarray, k: int = 10, target: float = RECALL_TARGET) -> dict[str, Any] | None:
    """Set the cheapest search setting (IVF ``nprobe``, HNSW ``efSearch``) whose recall@k on ``queries`` against the
    exact answer reaches ``target``, and say what it is and what it measured (None for an exact index).

    The setting is stored on the index (FAISS saves it with the index), so every later search uses it.
    """
    inner = _inner(index)
    if index.ntotal == 0 or not (hasattr(inner, "nprobe") or hasattr(inner, "hnsw")):
        return None
    k = min(k, int(index.ntotal))
    _, truth = search_index(index, queries, k, exact=True)
    if hasattr(inner, "hnsw"):
        name, steps = "ef_search", [v for v in _EF_STEPS if v >= k]
    else:
        name, steps = "nprobe", sorted({min(2**i, int(inner.nlist)) for i in range(32) if 2 ** (i - 1) < inner.nlist})
    recall = 0.0
    for value in steps:
        IndexSpec("auto").tune(index, **{name: value})
        _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        hits = [len(set(row[row >= 0]) & set(want[want >= 0])) for row, want in zip(found, truth)]
        recall = float(np.mean(hits)) / k
        if recall >= target:
            break
    return {"setting": name, "value": int(value), f"recall_at_{k}": round(recall, 4), "queries": len(queries),
            "vectors": int(index.ntotal)}  # fmt: skip


def _inner(index: Any) -> Any:
    import faiss

    return faiss.downcast_index(index.index) if hasattr(index, "id_map") else index


def build_index(spec: IndexSpec, dim: int, count: int, sample: np.ndarray | None) -> Any:
    """An empty index of the spec's kind for about ``count`` vectors (IVF is trained on ``sample``)."""
    import faiss

    kind = spec.resolve(count)
    if kind == "ivf" and (sample is None or len(sample) < ivf_lists(count)):
        kind = "flat"  # too few vectors to train lists yet; exact search is cheap at this size anyway
    return faiss.IndexIDMap2(_KINDS[kind](dim, count, sample))


def save_index(folder: Path, index: Any, state: dict[str, Any]) -> None:
    """Write the index and its state as one file, atomically: a JSON header line, then FAISS's serialisation."""
    import faiss

    payload = faiss.serialize_index(index)  # uint8 array
    tmp = folder / f".{INDEX_FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(json.dumps(state).encode() + b"\n")
        handle.write(payload.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / INDEX_FILE)


def load_index(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The saved index and its state, or (None, {}) when there is none or it cannot be read."""
    import faiss

    path = folder / INDEX_FILE
    if not path.is_file():
        return None, {}
    try:
        data = path.read_bytes()
        header, _, body = data.partition(b"\n")
        state = json.loads(header)
        index = faiss.deserialize_index(np.frombuffer(body, dtype=np.uint8).copy())
        return index, state
    except Exception:
        return None, {}  # damaged or from another version: the store rebuilds it from SQLite


def index_ids(index: Any) -> np.ndarray:
    """The ids an ``IndexIDMap2`` holds."""
    import faiss

    return faiss.vector_to_array(index.id_map).astype(np.int64)
