"""Batch tagging and indexing on Ray Data, for collections that outgrow one machine.

The pipeline: the file list becomes a Ray dataset; CPU tasks read, hash, decode and preprocess images
(``map_batches`` with plain functions); an actor pool encodes them (``compute=ActorPoolStrategy``), each actor
loading the model once and using a GPU when the cluster has them; the driver writes what comes back through the
same writers as the local engine: the same output rows, the same error report, the same resume (images already in
the output are not sent again), plus Parquet shards of the embeddings for :mod:`clipzero.shardindex`.

Ray is an optional extra (``pip install 'clipzero[ray]'``), imported only here. ``ray.init()`` starts a local
cluster (tests, CI, a laptop); ``--ray-address`` or ``RAY_ADDRESS`` joins an existing one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClipzeroError, ImageError

__all__ = ["RayOptions", "ray_embed"]


@dataclass
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: a cluster address (``ray://host:10001``, ``auto``); None: RAY_ADDRESS, else a local cluster.
        actors: encoder actors (default: one per GPU, else half the CPUs, at least 1).
        batch_size: images per decode task batch and per encoder call.
        cpus_per_actor: CPUs each encoder actor reserves (its torch threads). Giving an actor all of a node's
            CPUs leaves none for the decode tasks, and the pipeline stalls: keep it below the CPUs per node.
    """

    address: str | None = None
    actors: int | None = None
    batch_size: int = 32
    cpus_per_actor: int = 1


def _init(options: RayOptions) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ClipzeroError("--engine ray needs Ray: pip install 'clipzero[ray]'") from exc
    if not ray.is_initialized():
        address = options.address or os.environ.get("RAY_ADDRESS")
        import logging

        kwargs: dict[str, Any] = {
            "ignore_reinit_error": True,
            "log_to_driver": False,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
        }
        logging.getLogger("ray").setLevel(logging.ERROR)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 2, **kwargs)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray


@lru_cache(maxsize=4)
def _preprocess_for(spec: str) -> tuple[Any, tuple[int, int]]:
    """The model's image preprocessing, built without loading its weights (once per worker process)."""
    from .models import _build, parse_spec

    model, preprocess, _, _, _ = _build(parse_spec(spec), load_weights=False)
    size: Any = getattr(model.visual, "image_size", 224)
    side = int(max(size) if isinstance(size, (tuple, list)) else size)
    del model
    return preprocess, (side, side)


def _decode(batch: dict[str, np.ndarray], spec: str) -> dict[str, np.ndarray]:
    """CPU task: read, hash, decode and preprocess a batch of files; failures carry their reason."""
    from .images import load_image

    preprocess, draft = _preprocess_for(spec)
    paths = [str(p) for p in batch["path"]]
    pixels, shas, errors, sizes, mtimes, nbytes = [], [], [], [], [], []
    shape: tuple[int, ...] | None = None
    for path in paths:
        tensor, sha, error, size, mtime, n = None, "", "", 0, 0, 0
        try:
            stat = os.stat(path)
            data = Path(path).read_bytes()
            sha, size, mtime, n = hashlib.sha256(data).hexdigest(), stat.st_size, stat.st_mtime_ns, len(data)
            tensor = preprocess(load_image(data, draft=draft)).numpy()
            shape = tensor.shape
        except OSError as exc:
            error = f"cannot read file: {exc.strerror or exc}"
        except ImageError as exc:
            error = exc.reason
        pixels.append(tensor)
        shas.append(sha)
        errors.append(error)
        sizes.append(size)
        mtimes.append(mtime)
        nbytes.append(n)
    shape = shape or (3, draft[0], draft[1])
    stacked = np.stack([p if p is not None else np.zeros(shape, np.float32) for p in pixels]).astype(np.float32)
    return {
        "path": np.asarray(paths, dtype=object),
        "sha256": np.asarray(shas, dtype=object),
        "error": np.asarray(errors, dtype=object),
        "pixels": stacked,
        "size": np.asarray(sizes, np.int64),
        "mtime_ns": np.asarray(mtimes, np.int64),
        "nbytes": np.asarray(nbytes, np.int64),
    }


class _Encode:
    """Actor: loads the model once; encodes batches and, when labels are given, classifies them."""

    def __init__(self, spec: str, precision: str, adapter: str | None, classify: dict[str, Any] | None,
                 threads: int) -> None:  # fmt: skip
        import torch

        from .models import load_model
        from .zeroshot import ZeroShotClassifier

        torch.set_num_threads(max(1, threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = load_model(spec, device=device, precision=precision, adapter=adapter)
        self.classify = classify
        self.classifier = (
            ZeroShotClassifier(self.encoder, classify["labels"], templates=classify["templates"], label_cache=False)
            if classify
            else None
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        good = np.asarray([not e for e in batch["error"]], dtype=bool)
        vectors = np.zeros((len(good), self.encoder.embed_dim), np.float32)
        if good.any():
            vectors[good] = self.encoder.encode_pixels(torch.from_numpy(batch["pixels"][good]))
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["vector"] = vectors
        if self.classifier is not None and self.classify is not None:
            rows = [json.dumps(None)] * len(good)
            if good.any():
                predictions = self.classifier.predict_embeddings(
                    vectors[good], [str(p) for p in batch["path"][good]], top_k=self.classify["top_k"],
                    threshold=self.classify["threshold"],
                )  # fmt: skip
                for row, prediction in zip(np.flatnonzero(good), predictions):
                    rows[row] = json.dumps(prediction.to_dict(), ensure_ascii=False)
            out["prediction"] = np.asarray(rows, dtype=object)
        return out


def ray_embed(
    paths: Sequence[str],
    *,
    spec: str,
    precision: str,
    adapter: str | None = None,
    classify: dict[str, Any] | None = None,
    options: RayOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """Embed (and, with ``classify``, tag) files on Ray; yields one row per input, in no particular order.

    Each row: path, sha256, error ("" when fine), size, mtime_ns, nbytes, vector (float32), and with ``classify``
    (``{"labels", "templates", "top_k", "threshold"}``) the prediction as a dict.
    """
    options = options or RayOptions()
    if not paths:
        return
    ray = _init(options)
    from ray.data import ActorPoolStrategy

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = options.actors or (gpus if gpus else max(1, cpus // 2))
    dataset = ray.data.from_items(
        [{"path": p} for p in paths], override_num_blocks=max(1, len(paths) // options.batch_size)
    )
    decoded = dataset.map_batches(
        _decode, fn_kwargs={"spec": spec}, batch_size=options.batch_size, batch_format="numpy"
    )
    encoded = decoded.map_batches(
        _Encode,
        fn_constructor_kwargs={"spec": spec, "precision": precision, "adapter": adapter, "classify": classify,
                               "threads": options.cpus_per_actor},
        compute=ActorPoolStrategy(size=actors),
        batch_size=options.batch_size,
        batch_format="numpy",
        num_cpus=options.cpus_per_actor,
        num_gpus=1 if gpus else 0,
    )  # fmt: skip
    for batch in encoded.iter_batches(batch_size=options.batch_size, batch_format="numpy"):
        for i in range(len(batch["path"])):
            row = {
                "path": str(batch["path"][i]),
                "sha256": str(batch["sha256"][i]),
                "error": str(batch["error"][i]),
                "size": int(batch["size"][i]),
                "mtime_ns": int(batch["mtime_ns"][i]),
                "nbytes": int(batch["nbytes"][i]),
                "vector": np.asarray(batch["vector"][i], np.float32),
            }
            if "prediction" in batch:
                row["prediction"] = json.loads(str(batch["prediction"][i]))
            yield row


class ShardWriter:
    """Parquet shards of (path, sha256, vector), one file per ``rows_per_shard`` rows, numbered after any there."""

    def __init__(self, folder: str | os.PathLike[str], rows_per_shard: int = 10_000) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows_per_shard = rows_per_shard
        self.number = len(list(self.folder.glob("part-*.parquet")))
        self._rows: list[dict[str, Any]] = []

    def add(self, path: str, sha256: str, vector: np.ndarray) -> None:
        self._rows.append({"path": path, "sha256": sha256, "vector": vector.astype(np.float32).tolist()})
        if len(self._rows) >= self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = self.folder / f"part-{self.number:05d}.parquet"
        partial = target.with_suffix(".partial")
        pq.write_table(pa.Table.from_pylist(self._rows), str(partial))
        os.replace(partial, target)  # a shard is there whole or not at all
        self.number += 1
        self._rows = []
