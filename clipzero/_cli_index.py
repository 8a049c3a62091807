"""``clipzero index add|info|prune`` and ``clipzero search``: thin front doors over EmbeddingStore."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parsers", "default_store", "handlers"]


def default_store() -> Path:
    from .config import home

    return home() / "store"


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", "-s", metavar="DIR", type=Path, help="the store directory (default: $CLIPZERO_HOME/store)"
    )


def add_parsers(commands: Any, add_model_options: Any) -> None:
    index = commands.add_parser("index", help="embed images once into a store, for search and reuse")
    actions = index.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add images (incremental: unchanged files and known content are skipped)")
    add.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    _store_option(add)
    add_model_options(add)
    add.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    add.add_argument(
        "--index",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivf"],
        help="index kind for a new store (default auto: exact below 50,000 images, HNSW above)",
    )
    add.add_argument("--batch-size", type=int, default=32, metavar="N")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    from ._cli_tag import add_engine_options

    add_engine_options(add)
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
    _store_option(info)
    info.add_argument("--json", action="store_true")
    prune = actions.add_parser("prune", help="forget images whose files are gone")
    _store_option(prune)

    search = commands.add_parser("search", help="find stored images by text or by image")
    search.add_argument("text", nargs="?", metavar="TEXT", help="what to look for")
    search.add_argument("--image", "-i", metavar="IMG", help="find images like this one instead")
    _store_option(search)
    add_model_options(search)
    search.add_argument("--top-k", "-k", type=int, default=10, metavar="K")
    search.add_argument("--json", action="store_true", help='print [{"path", "score", "sha256"}, ...]')
    search.add_argument("--nprobe", type=int, metavar="N", help="IVF index: inverted lists probed (recall vs speed)")
    search.add_argument("--ef-search", type=int, metavar="N", help="HNSW index: search breadth (recall vs speed)")
    search.add_argument("--sharded", type=Path, metavar="INDEX", help="search a merged index (index build-sharded), "
                        "memory-mapped, instead of a store; --model must be the model of its vectors")  # fmt: skip


def _existing_store(args: argparse.Namespace) -> Path:
    """The store directory asked for, which must already hold a store."""
    from .errors import StoreError

    path: Path = args.store or default_store()
    if not (path / "store.sqlite").exists():
        raise StoreError(f"no store at {path}: create one with `clipzero index add PATH --store {path}`")
    return path


def _open(args: argparse.Namespace) -> Any:
    from .config import load_settings
    from .store import open_store

    settings = load_settings()
    return open_store(
        args.store or default_store(),
        getattr(args, "model", None),
        index=getattr(args, "index", "auto"),
        device=getattr(args, "device", None) or settings.device,
        precision=getattr(args, "precision", None) or settings.precision,
        adapter=getattr(args, "adapter", None),
    )


def cmd_index(args: argparse.Namespace, out: TextIO) -> int:
    from .images import find_images
    from .store import EmbeddingStore

    if args.index_command == "build-sharded":
        from .shardindex import build_from_shards, iter_shard_files

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
    if args.index_command == "add" and args.engine == "ray":
        return _add_on_ray(args, out)
    if args.index_command == "add":
        from tqdm import tqdm

        paths = find_images(args.paths, recursive=args.recursive)
        with (
            _open(args) as store,
            tqdm(
                total=len(paths),
                unit="img",
                file=sys.stderr,
                leave=False,
                disable=args.quiet or not sys.stderr.isatty(),
            ) as bar,
        ):
            report = store.add(paths, batch_size=args.batch_size, progress=bar.update)
            total = len(store)
        for path, reason in report.failed:
            sys.stderr.write(f"clipzero: skipped {path}: {reason}\n")
        summary = {
            "encoded": report.encoded,
            "reused": report.reused,
            "unchanged": report.unchanged,
            "failed": len(report.failed),
            "images_in_store": total,
        }
        if args.json:
            json.dump({**summary, "errors": [{"path": p, "error": r} for p, r in report.failed]}, out, indent=2)
            out.write("\n")
        else:
            out.write(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + "\n")
        return 0
    path = _existing_store(args)
    with EmbeddingStore(path) as store:
        if args.index_command == "info":
            info = store.info()
            if args.json:
                json.dump(info, out, indent=2)
                out.write("\n")
            else:
                out.write("".join(f"{k:<15} {v}\n" for k, v in info.items()))
            return 0
        pruned = store.prune()
        out.write(f"pruned {pruned} path(s); {len(store)} image(s) remain\n")
        return 0


def cmd_search(args: argparse.Namespace, out: TextIO) -> int:
    from .errors import ConfigError

    if (args.text is None) == (args.image is None):
        raise ConfigError("give a TEXT to search for, or --image IMG (not both)")
    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    if args.sharded is not None:
        return _search_sharded(args, out)
    _existing_store(args)
    with _open(args) as store:
        if args.image is not None:
            from .images import load_image

            query: Any = load_image(args.image)
        else:
            query = store.encoder.encode_texts([args.text])[0]
        hits = store.search(query, top_k=args.top_k, nprobe=args.nprobe, ef_search=args.ef_search)
    if args.json:
        json.dump([h.to_dict() for h in hits], out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"{h.score:7.4f}  {h.path}\n" for h in hits))
    return 0


def _search_sharded(args: argparse.Namespace, out: TextIO) -> int:
    from .config import load_settings
    from .models import load_model
    from .shardindex import ShardedIndex

    index = ShardedIndex(args.sharded, nprobe=args.nprobe)
    encoder = load_model(args.model or load_settings().model, device=args.device or "auto", adapter=args.adapter)
    if args.image is not None:
        query = encoder.encode_images([args.image])[0]
    else:
        query = encoder.encode_texts([args.text])[0]
    hits = index.search(query, args.top_k)[0]
    index.close()
    if args.json:
        json.dump([{"path": p, "score": s} for p, s in hits], out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        out.write("".join(f"{score:7.4f}  {path}\n" for path, score in hits))
    return 0


def _add_on_ray(args: argparse.Namespace, out: TextIO) -> int:
    """`index add --engine ray`: files the store does not hold unchanged are embedded on Ray and put in the store;
    the new vectors are also written as Parquet shards in ``<store>/shards/``."""
    import os

    from .images import find_images
    from .ray_engine import RayOptions, ShardWriter, ray_embed
    from .store import Record, _canonical

    paths = find_images(args.paths, recursive=args.recursive)
    failed: list[tuple[str, str]] = []
    encoded = unchanged = 0
    with _open(args) as store:
        todo = []
        for path in paths:
            canonical = _canonical(path)
            try:
                stat = os.stat(canonical)
            except OSError as exc:
                failed.append((path, f"cannot read file: {exc.strerror or exc}"))
                continue
            if store.is_unchanged(canonical, stat):
                unchanged += 1
            else:
                todo.append(canonical)
        shards = ShardWriter(store.path / "shards", rows_per_shard=args.shard_rows)
        options = RayOptions(address=args.ray_address, actors=args.ray_actors, batch_size=args.batch_size)
        records: list[Record] = []

        def flush() -> None:
            for record in records:
                if record.vector is not None:
                    shards.add(record.path, record.sha256, record.vector)
            shards.flush()
            with store.writer():
                store.put(records)
            records.clear()

        for row in ray_embed(todo, spec=store.encoder.spec, precision=store.encoder.precision, adapter=args.adapter,
                             options=options):  # fmt: skip
            if row["error"]:
                failed.append((row["path"], row["error"]))
                continue
            records.append(
                Record(row["path"], row["sha256"], row["nbytes"], row["size"], row["mtime_ns"], row["vector"])
            )
            encoded += 1
            if len(records) >= shards.rows_per_shard:
                flush()
        flush()
        total = len(store)
    for path, reason in failed:
        sys.stderr.write(f"clipzero: skipped {path}: {reason}\n")
    summary = {"encoded": encoded, "unchanged": unchanged, "failed": len(failed), "images_in_store": total}
    if args.json:
        json.dump({**summary, "errors": [{"path": p, "error": r} for p, r in failed]}, out, indent=2)
        out.write("\n")
    else:
        out.write(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + "\n")
    return 0


handlers = {"index": cmd_index, "search": cmd_search}
