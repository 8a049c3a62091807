"""Batch tagging and indexing on Ray Data, for collections that outgrow one machine.

The pipeline: the file list becomes a Ray dataset; CPU tasks read, hash, decode and preprocess images
(``map_batches`` with plain functions); an actor pool encodes them (``compute=ActorPoolStrategy``), each actor
loading the model once and using a GPU when the cluster has them; the driver writes what comes back through the
same writers as the local engine: the same output rows, the same error report, the same resume (images already in
the output are not sent again), plus Parquet shards of the embeddings for :mod:`clipzero.store.sharded`.

Ray is an optional extra (``pip install 'clipzero[ray]'``), imported only here. ``ray.init()`` starts a local
cluster (tests, CI, a laptop); ``--ray-address`` or ``RAY_ADDRESS`` joins an existing one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .pipeline import Decoder, Embedded, prepare
from .zeroshot import LabelScore, Prediction

if TYPE_CHECKING:
    from .encoder import Encoder

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

    def embed_files(self, paths: Sequence[str], encoder: Encoder) -> Iterator[Embedded]:
        """The :class:`~clipzero.pipeline.Engine` plug: ``encoder``'s model embeds ``paths`` on Ray."""
        for item, _ in ray_embed(list(paths), spec=encoder.spec, precision=encoder.precision,
                                 adapter=encoder.adapter, options=self):  # fmt: skip
            yield item


def _init(options: RayOptions) -> Any:
    from .extras import require

    require("ray", "the Ray engine (--engine ray)")
    import ray

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
            from .machine import usable_cores

            ray.init(num_cpus=usable_cores(), **kwargs)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray


@lru_cache(maxsize=4)
def _decoder_for(spec: str) -> Decoder:
    """The model's :class:`~clipzero.pipeline.Decoder`, built without loading its weights (once per worker)."""
    from .models import build_open_clip, parse_spec

    model, preprocess, _, _, _ = build_open_clip(parse_spec(spec), load_weights=False)
    size: Any = getattr(model.visual, "image_size", 224)
    side = int(max(size) if isinstance(size, (tuple, list)) else size)
    del model
    return Decoder(preprocess, (side, side))


def _decode(batch: dict[str, np.ndarray], spec: str) -> dict[str, np.ndarray]:
    """CPU task: :func:`clipzero.pipeline.prepare` for a batch of files; failures carry their reason."""
    decoder = _decoder_for(spec)
    items = [prepare(str(p), decoder) for p in batch["path"]]
    shape = next((tuple(i.pixels.shape) for i in items if i.pixels is not None), (3, *decoder.draft))
    pixels = [i.pixels.numpy() if i.pixels is not None else np.zeros(shape, np.float32) for i in items]
    return {
        "path": np.asarray([i.name for i in items], dtype=object),
        "sha256": np.asarray([i.sha256 for i in items], dtype=object),
        "error": np.asarray([i.error or "" for i in items], dtype=object),
        "pixels": np.stack(pixels).astype(np.float32),
        "size": np.asarray([i.size for i in items], np.int64),
        "mtime_ns": np.asarray([i.mtime_ns for i in items], np.int64),
        "nbytes": np.asarray([i.nbytes for i in items], np.int64),
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
) -> Iterator[tuple[Embedded, Prediction | None]]:
    """Embed (and, with ``classify``, tag) files on Ray; one pair per input, in no particular order.

    Each pair is the input's :class:`~clipzero.pipeline.Embedded` (as the local pipeline makes it: the same
    reading, hashing, decoding and error wording) and, with ``classify`` (``{"labels", "templates", "top_k",
    "threshold"}``), its :class:`~clipzero.zeroshot.Prediction` (None without ``classify`` or on error).
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
            error = str(batch["error"][i])
            item = Embedded(
                str(batch["path"][i]),
                sha256=str(batch["sha256"][i]),
                vector=None if error else np.asarray(batch["vector"][i], np.float32),
                error=error or None,
                encoded=not error,
                nbytes=int(batch["nbytes"][i]),
                size=int(batch["size"][i]),
                mtime_ns=int(batch["mtime_ns"][i]),
            )
            found = json.loads(str(batch["prediction"][i])) if "prediction" in batch else None
            yield item, _prediction(found) if found else None


def _prediction(row: dict[str, Any]) -> Prediction:
    scores = [LabelScore(p["label"], p["score"], p["similarity"]) for p in row["predictions"]]
    return Prediction(row["image"], row["label"], scores)
