"""``clipzero tag``: batch tagging to a result file, resumable, with an error report and a summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    tag = commands.add_parser(
        "tag",
        help="tag many images, streaming results to a file (resumable)",
        description="Tag images with labels; results go to --out as they come, failures to <out>.errors.jsonl. "
        "Running again with the same --out resumes where the last run stopped.",
    )
    tag.add_argument("paths", nargs="+", metavar="PATH", help="image and video files, or folders of them")
    options.add_labels_options(tag)
    tag.add_argument("--out", "-o", required=True, type=Path, metavar="FILE", help="result file")
    tag.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="default: from the --out ending")
    tag.add_argument("--long", action="store_true", help="with --multi-label and CSV: one row per image and label "
                     "that applies (image, sha256, label, score, similarity, region)")  # fmt: skip
    options.add_model_options(tag)
    options.add_head_option(tag)
    options.add_rerank_options(tag)
    options.add_templates_option(tag)
    tag.add_argument("--top-k", "-k", type=int, default=5, metavar="K", help="labels per image (default 5)")
    options.add_reject_options(tag)
    options.add_multilabel_options(tag)
    options.add_store_option(tag, "reuse embeddings of known images from this store, and add new ones to it")
    tag.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    tag.add_argument("--workers", type=int, metavar="N", help="decode threads (default: one per core, at least 2)")
    tag.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    options.add_video_options(tag)
    tag.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    tag.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    tag.add_argument("--xmp", action="store_true", help="also write each image's labels as keywords in its XMP "
                     "sidecar, merged with what is there (as `clipzero export --to xmp`; needs the xmp extra)")
    options.add_xmp_options(tag)
    options.add_engine_options(tag)


def cmd_tag(args: argparse.Namespace, out: TextIO) -> int:
    from ..errors import ConfigError
    from ..extras import require
    from ..factory import open_classifier, open_encoder, resolve_templates
    from ..outputs import ResultWriter, format_for
    from ..tagging import TagSummary, check_engine, tag_into

    options.at_least(args, 1, "top_k", "batch_size", "workers", "shard_rows", "ray_actors")
    options.check_reject(args)
    options.check_multilabel(args)
    options.check_every(args)
    labels = options.labels(args)
    templates = resolve_templates(args.templates)
    fmt = format_for(args.out, args.format)
    if args.long and (fmt != "csv" or not args.multi_label):
        raise ConfigError("--long is for --multi-label with a CSV --out")
    if fmt == "parquet":
        require("parquet", f"--out {args.out} (Parquet)")
    if args.xmp:
        require("xmp", "--xmp")
    check_engine(args.engine, store=args.store is not None, rerank=args.rerank, head=bool(args.head),
                 reject=bool(args.reject) or args.min_similarity is not None)  # fmt: skip
    if args.engine == "ray":
        require("ray", "--engine ray")
    paths = options.input_images(args)  # a wrong path fails here, before the model loads
    reranker = options.reranker(args, templates)
    choice = options.check_model(args, args.store)
    writer = ResultWriter(args.out, fmt, multi_label=args.multi_label, long=args.long)
    summary = TagSummary()
    store = None
    try:
        if args.store is not None:
            from ..factory import open_store

            store = open_store(args.store, choice)
            encoder: Any = store.encoder  # the store's own model unless --model says otherwise
        else:
            encoder = open_encoder(choice)
        classifier = open_classifier(encoder, labels, head=args.head, templates=templates,
                                     calibration=args.calibration)  # fmt: skip
        options.note_templates(classifier, args)
        ray = None
        if args.engine == "ray":
            from ..ray_engine import RayOptions

            ray = RayOptions(address=args.ray_address, actors=args.ray_actors, batch_size=args.batch_size)
        shards = Path(str(args.out) + ".embeddings") if args.engine == "ray" else None
        todo = sum(1 for p in paths if p not in writer.done)
        with options.progress(todo, args.quiet, own_speed=True) as bar:

            def advance(done: int, total: int, so_far: TagSummary) -> None:
                bar.set_postfix_str(f"{so_far.images_per_second:.1f} images/s", refresh=False)
                bar.update(done - bar.n)

            tag_into(
                writer, paths, classifier, batch_size=args.batch_size, summary=summary, on_progress=advance,
                top_k=args.top_k, threshold=args.threshold, reject=args.reject, min_similarity=args.min_similarity,
                workers=args.workers, store=store, reranker=reranker, every=args.every, scenes=args.scenes,
                engine=args.engine, ray=ray, shards=shards, shard_rows=args.shard_rows, multi_label=args.multi_label,
                views=args.views,
            )  # fmt: skip
    finally:
        writer.close(completed=False)  # a no-op after tag_into closed it; here when the model failed to load
        if store is not None:
            store.close()
    note = f"; embeddings in {shards}" if shards is not None else ""
    code = _report(args, summary, writer, out, note)
    if args.xmp:  # every row of the file, those of an earlier run it resumed included
        from ..outputs import read_results

        options.say_exported(options.write_xmp(read_results(args.out, fmt), args))
    return code


def _report(args: argparse.Namespace, summary: Any, writer: Any, out: TextIO, note: str = "") -> int:
    """The summary: JSON on stdout with --json, one line on stderr always."""
    if args.json:
        report = {**summary.to_dict(), "out": str(args.out), "errors": str(writer.errors_path), "engine": args.engine}
        json.dump(report, out, indent=2)
        out.write("\n")
    videos = f" (frames of {summary.videos} videos among them)" if summary.videos else ""
    sys.stderr.write(
        f"clipzero: tagged {summary.tagged}{videos}, skipped {summary.skipped} (already in {args.out}), failed "
        f"{summary.failed}{f' (see {writer.errors_path})' if summary.failed else ''}; {summary.elapsed:.1f} s, "
        f"{summary.images_per_second:.1f} images/s{' on Ray' if args.engine == 'ray' else ''}, precision "
        f"{summary.precision}{note}\n"
    )
    return 1 if summary.failed and not summary.tagged and not summary.skipped else 0  # every input failed: 1


COMMANDS = {"tag": cmd_tag}
