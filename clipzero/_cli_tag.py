"""``clipzero tag``: batch tagging to a result file, resumable, with an error report and a summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "cmd_tag"]


def add_parser(commands: Any, add_model_options: Any) -> None:
    tag = commands.add_parser(
        "tag",
        help="tag many images, streaming results to a file (resumable)",
        description="Tag images with labels; results go to --out as they come, failures to <out>.errors.jsonl. "
        "Running again with the same --out resumes where the last run stopped.",
    )
    tag.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    labels = tag.add_mutually_exclusive_group()
    labels.add_argument("--labels", "-l", nargs="+", metavar="L", help="candidate labels")
    labels.add_argument("--labels-file", "-f", metavar="F", help="file with one label per line (# comments)")
    tag.add_argument("--out", "-o", required=True, type=Path, metavar="FILE", help="result file")
    tag.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="default: from the --out ending")
    add_model_options(tag)
    from ._cli_rerank import add_rerank_options
    from .cli import add_head_option

    add_head_option(tag)
    add_rerank_options(tag)
    tag.add_argument("--templates", "-t", metavar="NAME|PATH", help="template set (default ensemble-en)")
    tag.add_argument("--top-k", "-k", type=int, default=5, metavar="K", help="labels per image (default 5)")
    tag.add_argument("--threshold", type=float, metavar="P", help="no label when the top probability is below P")
    tag.add_argument(
        "--store",
        "-s",
        type=Path,
        metavar="DIR",
        help="reuse embeddings of known images from this store, and add new ones to it",
    )
    tag.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    tag.add_argument("--workers", type=int, metavar="N", help="decode threads (default: one per core, at least 2)")
    tag.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    tag.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    tag.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_engine_options(tag)


def add_engine_options(parser: Any) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local (threads and one model here; default) or ray (Ray Data: decode tasks and an "
                       "encoder actor pool, local or on a cluster)")  # fmt: skip
    group.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default $RAY_ADDRESS, else local)")
    group.add_argument("--ray-actors", type=int, metavar="N", help="encoder actors (default: GPUs, else CPUs / 2)")
    group.add_argument("--shard-rows", type=int, default=1000, metavar="N",
                       help="ray: rows per embedding shard and per durable write (default 1000)")  # fmt: skip


def cmd_tag(args: argparse.Namespace, out: TextIO) -> int:
    from tqdm import tqdm

    from ._cli_rerank import make_reranker
    from .cli import make_classifier
    from .config import load_settings
    from .encoder import default_precision, resolve_device
    from .errors import ConfigError
    from .images import find_images
    from .models import load_model
    from .outputs import ResultWriter
    from .tagging import TagFailure, TagSummary, tag_images

    if args.top_k < 1 or args.batch_size < 1 or (args.workers is not None and args.workers < 1):
        raise ConfigError("--top-k, --batch-size and --workers must be at least 1")
    settings = load_settings()
    paths = find_images(args.paths, recursive=args.recursive)
    writer = ResultWriter(args.out, args.format)
    todo = [p for p in paths if p not in writer.done]
    summary = TagSummary(skipped=len(paths) - len(todo))
    device = args.device or settings.device
    precision = args.precision or default_precision(resolve_device(device))
    if args.engine == "ray":
        return _tag_on_ray(args, todo, writer, summary, precision, settings, out)
    store = None
    if args.store is not None:
        from .store import open_store

        store = open_store(args.store, args.model, device=device, precision=precision, adapter=args.adapter)
        encoder = store.encoder  # the store's own model unless --model says otherwise
    else:
        encoder = load_model(args.model or settings.model, device=device, precision=precision, adapter=args.adapter)
    classifier = make_classifier(encoder, args, args.templates or settings.templates)
    reranker = make_reranker(args, args.templates or settings.templates)
    completed = False
    try:
        with tqdm(
            total=len(todo), unit="img", file=sys.stderr, leave=False, disable=args.quiet or not sys.stderr.isatty()
        ) as bar:
            results = tag_images(
                todo,
                classifier,
                model=encoder,
                templates=args.templates or settings.templates,
                top_k=args.top_k,
                threshold=args.threshold,
                batch_size=args.batch_size,
                workers=args.workers,
                store=store,
                summary=summary,
                reranker=reranker,
            )
            for n, result in enumerate(results, 1):
                if isinstance(result, TagFailure):
                    writer.write_error(result.to_dict())
                else:
                    writer.write(result.to_dict())
                if n % args.batch_size == 0:
                    writer.flush()
                    bar.set_postfix(img_s=f"{summary.images_per_second:.1f}", refresh=False)
                bar.update(1)
        completed = True
    finally:
        writer.close(completed=completed)
        if store is not None:
            store.close()
    return _report(args, summary, writer, out)


def _report(
    args: argparse.Namespace, summary: Any, writer: Any, out: TextIO, engine: str = "local", note: str = ""
) -> int:
    """The summary: JSON on stdout with --json, one line on stderr always."""
    if args.json:
        report = {**summary.to_dict(), "out": str(args.out), "errors": str(writer.errors_path), "engine": engine}
        json.dump(report, out, indent=2)
        out.write("\n")
    sys.stderr.write(
        f"clipzero: tagged {summary.tagged}, skipped {summary.skipped} (already in {args.out}), failed "
        f"{summary.failed}{f' (see {writer.errors_path})' if summary.failed else ''}; {summary.elapsed:.1f} s, "
        f"{summary.images_per_second:.1f} images/s{' on Ray' if engine == 'ray' else ''}, precision "
        f"{summary.precision}{note}\n"
    )
    return 0


def _tag_on_ray(
    args: argparse.Namespace, todo: list[str], writer: Any, summary: Any, precision: str, settings: Any, out: TextIO
) -> int:
    """`clipzero tag --engine ray`: the same rows, error report and resume as the local engine, plus embedding
    shards in ``<out>.embeddings/`` for building a sharded index."""
    import time

    from .errors import ConfigError
    from .ray_engine import RayOptions, ShardWriter, ray_embed
    from .tagging import TagFailure
    from .zeroshot import Prediction, clean_labels, read_labels

    if args.head or args.rerank or args.store:
        raise ConfigError("--engine ray tags with --labels or --labels-file only (no --head, --rerank or --store)")
    if not args.labels and not args.labels_file:
        raise ConfigError("give the labels: --labels L [L ...] or --labels-file F")
    labels = clean_labels(read_labels(args.labels_file) if args.labels_file else args.labels)
    classify = {"labels": labels, "templates": args.templates or settings.templates, "top_k": args.top_k,
                "threshold": args.threshold}  # fmt: skip
    shards = ShardWriter(Path(str(args.out) + ".embeddings"), rows_per_shard=args.shard_rows)
    started = time.perf_counter()
    pending: list[dict[str, Any]] = []
    summary.precision = precision

    def flush() -> None:
        for row in pending:  # shards first: a kill in between repeats rows in a shard rather than losing vectors
            if not row["error"]:
                shards.add(row["path"], row["sha256"], row["vector"])
        shards.flush()
        for row in pending:
            if row["error"]:
                writer.write_error(TagFailure(row["path"], row["error"]).to_dict())
                summary.failed += 1
            else:
                prediction = row["prediction"]
                scores = [_score(p) for p in prediction["predictions"]]
                result = Prediction(prediction["image"], prediction["label"], scores)
                writer.write({"image": row["path"], "sha256": row["sha256"], **_rows(result)})
                summary.tagged += 1
        writer.flush()
        pending.clear()

    spec = args.model or settings.model
    options = RayOptions(address=args.ray_address, actors=args.ray_actors, batch_size=args.batch_size)
    completed = False
    try:
        for row in ray_embed(todo, spec=spec, precision=precision, adapter=args.adapter, classify=classify,
                             options=options):  # fmt: skip
            pending.append(row)
            summary.encoded += 0 if row["error"] else 1
            if len(pending) >= shards.rows_per_shard:
                flush()
        flush()
        completed = True
    finally:
        writer.close(completed=completed)
    summary.elapsed = time.perf_counter() - started
    return _report(args, summary, writer, out, engine="ray", note=f"; embeddings in {shards.folder}")


def _score(item: dict[str, Any]) -> Any:
    from .zeroshot import LabelScore

    return LabelScore(item["label"], item["score"], item["similarity"])


def _rows(prediction: Any) -> dict[str, Any]:
    row = prediction.to_dict()
    return {"label": row["label"], "predictions": row["predictions"]}
