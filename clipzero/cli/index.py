"""``clipzero index add|build-sharded|info|prune`` and ``clipzero search``: thin doors over the store package."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]

_STORE_HELP = "the store directory (default: $CLIPZERO_HOME/store)"


def add_parsers(commands: Any) -> None:
    index = commands.add_parser("index", help="embed images once into a store, for search and reuse")
    actions = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add images (incremental: unchanged files and known content are skipped)")
    add.add_argument("paths", nargs="+", metavar="PATH", help="image and video files, or folders of them")
    options.add_store_option(add, _STORE_HELP)
    options.add_model_options(add)
    add.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    options.add_video_options(add)
    add.add_argument(
        "--index",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivf"],
        help="index kind for a new store (default auto: exact below 50,000 images, HNSW above)",
    )
    add.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    add.add_argument("--workers", type=int, metavar="N", help="decode threads (default: one per core, at least 2)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    options.add_engine_options(add)
    build = actions.add_parser(
        "build-sharded",
        help="build an IVF index from embedding shards, merged on disk, for memory-mapped search",
        description="Train IVF (flat or PQ lists, by size and memory budget) on a sample of the shards, fill it "
        "shard by shard, merge the lists on disk. Shards are Parquet files of path and vector, as --engine ray "
        "writes them (<store>/shards/, <out>.embeddings/). Search it with `clipzero search --sharded INDEX`.",
    )
    build.add_argument("shards", nargs="+", metavar="SHARDS", help="Parquet shard files or folders of them")
    build.add_argument("--out", "-o", type=Path, required=True, metavar="INDEX", help="index file to write")
    build.add_argument("--memory-gb", type=float, default=8.0, help="budget for the lists (PQ above it; default 8)")
    build.add_argument("--json", action="store_true")
    info = actions.add_parser("info", help="what a store holds")
    options.add_store_option(info, _STORE_HELP)
    info.add_argument("--json", action="store_true")
    prune = actions.add_parser("prune", help="forget images whose files are gone")
    options.add_store_option(prune, _STORE_HELP)

    search = commands.add_parser("search", help="find stored images by text or by image")
    search.add_argument("text", nargs="?", metavar="TEXT", help="what to look for")
    search.add_argument("--image", "-i", metavar="IMG", type=Path, help="find images like this one instead")
    options.add_store_option(search, _STORE_HELP)
    options.add_model_options(search)
    search.add_argument("--top-k", "-k", type=int, default=10, metavar="K", help="results (default 10)")
    search.add_argument("--json", action="store_true", help='print [{"path", "score", "sha256"}, ...]')
    search.add_argument("--nprobe", type=int, metavar="N", help="IVF index: inverted lists probed (recall vs speed)")
    search.add_argument("--ef-search", type=int, metavar="N", help="HNSW index: search breadth (recall vs speed)")
    search.add_argument("--exact", action="store_true", help="search every vector: a brute-force check on the "
                        "approximate index (whose setting is tuned for recall@10 of at least 0.95)")  # fmt: skip
    search.add_argument("--sharded", type=Path, metavar="INDEX", help="search a merged index (index build-sharded), "
                        "memory-mapped, instead of a store; --model must be the model of its vectors")  # fmt: skip


def _write(summary: dict[str, Any], args: argparse.Namespace, out: TextIO, errors: list[tuple[str, str]]) -> None:
    for path, reason in errors:
        sys.stderr.write(f"clipzero: skipped {path}: {reason}\n")
    if args.json:
        json.dump({**summary, "errors": [{"path": p, "error": r} for p, r in errors]}, out, indent=2)
        out.write("\n")
    else:
        out.write(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + "\n")


def _add(args: argparse.Namespace, out: TextIO) -> int:
    from ..factory import open_store

    options.at_least(args, 1, "batch_size", "workers", "shard_rows", "ray_actors")
    options.check_every(args)
    paths = options.input_images(args)  # a wrong path fails here, before the model loads
    ray = None
    if args.engine == "ray":
        from ..extras import require

        require("ray", "--engine ray")
        from ..ray_engine import RayOptions

        ray = RayOptions(address=args.ray_address, actors=args.ray_actors, batch_size=args.batch_size)
    path = args.store or options.default_store()
    choice = options.check_model(args, path)
    with open_store(path, choice, index=args.index) as store, options.progress(len(paths), args.quiet) as bar:
        report = store.add(paths, batch_size=args.batch_size, workers=args.workers, progress=bar.update,
                           engine=args.engine, ray=ray, shard_rows=args.shard_rows, every=args.every,
                           scenes=args.scenes)  # fmt: skip
        total = len(store)
        encoder: Any = store.encoder
    summary: dict[str, Any] = {"encoded": report.encoded, "reused": report.reused, "unchanged": report.unchanged,
               "failed": len(report.failed), "images_in_store": total}  # fmt: skip
    if args.json:
        summary.update(model=encoder.id, precision=encoder.precision, engine=args.engine)
    _write(summary, args, out, report.failed)
    done = report.encoded + report.reused + report.unchanged
    return 1 if report.failed and not done else 0  # every input failed: 1


def _build_sharded(args: argparse.Namespace, out: TextIO) -> int:
    from ..extras import require

    require("parquet", "index build-sharded (Parquet shards)")
    from ..store.sharded import build_from_shards, iter_shard_files

    files = [f for p in args.shards for f in (iter_shard_files(p) if Path(p).is_dir() else [Path(p)])]
    summary = build_from_shards(files, args.out, memory_budget_gb=args.memory_gb)
    if args.json:
        json.dump(summary, out, indent=2)
        out.write("\n")
    else:
        lists = summary["lists_bytes"] / 1e6
        out.write(
            f"{summary['vectors']} vectors from {summary['shards']} shards: {summary['factory']}, "
            f"{args.out} + {args.out}.ivfdata ({lists:.1f} MB of lists)\n"
        )
    return 0


def _info(args: argparse.Namespace, out: TextIO) -> int:
    from ..store import EmbeddingStore

    with EmbeddingStore(options.existing_store(args)) as store:
        info = store.info()
    if args.json:
        json.dump(info, out, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"{k:<15} {v}\n" for k, v in info.items()))
    return 0


def _prune(args: argparse.Namespace, out: TextIO) -> int:
    from ..store import EmbeddingStore

    with EmbeddingStore(options.existing_store(args)) as store:
        pruned = store.prune()
        out.write(f"pruned {pruned} path(s); {len(store)} image(s) remain\n")
    return 0


_ACTIONS = {"add": _add, "build-sharded": _build_sharded, "info": _info, "prune": _prune}


def cmd_index(args: argparse.Namespace, out: TextIO) -> int:
    return _ACTIONS[args.index_command](args, out)


def cmd_search(args: argparse.Namespace, out: TextIO) -> int:
    from ..errors import ConfigError
    from ..factory import open_encoder, open_store

    if (args.text is None) == (args.image is None):
        raise ConfigError("give a TEXT to search for, or --image IMG (not both)")
    options.at_least(args, 1, "top_k", "nprobe", "ef_search")
    if args.sharded is not None:
        from ..store.sharded import ShardedIndex

        encoder = open_encoder(options.check_model(args))
        index = ShardedIndex(args.sharded, nprobe=args.nprobe)
        vectors = encoder.encode_images([args.image]) if args.image is not None else encoder.encode_texts([args.text])
        found = index.search(vectors[0], args.top_k)[0]
        index.close()
        rows = [{"path": p, "score": s} for p, s in found]
    else:
        path = options.existing_store(args)
        with open_store(path, options.check_model(args, path)) as store:
            query: Any = args.image if args.image is not None else args.text  # a Path is an image, a str a text
            hits = store.search(query, top_k=args.top_k, nprobe=args.nprobe, ef_search=args.ef_search,
                                exact=args.exact)  # fmt: skip
        rows = [h.to_dict() for h in hits]
    if args.json:
        json.dump(rows, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"{row['score']:7.4f}  {_where(row)}\n" for row in rows))
    return 0


def _where(row: dict[str, Any]) -> str:
    """A hit's file, and for a video frame the time in it (``clip.mp4 at 1:02.00``)."""
    if "video" not in row:
        return str(row["path"])
    minutes, seconds = divmod(float(row["time"]), 60)
    return f"{row['video']} at {int(minutes)}:{seconds:05.2f}"


COMMANDS = {"index": cmd_index, "search": cmd_search}
