"""``clipzero dedup``: groups of duplicate images in a store (the same file twice, and near-duplicates)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    dedup = commands.add_parser(
        "dedup",
        help="find duplicate and near-duplicate images in a store",
        description="Exact duplicates (the same bytes under several paths) and near-duplicates (resized, "
        "re-encoded, cropped, turned or edited copies): candidates by a FAISS range search over the store's vectors, "
        "each verified on its pixels (features aligned by RANSAC, then compared), grouped around the image to keep "
        "(the largest, then the sharpest). Each copy is named by its kind. Nothing is deleted: the groups are "
        "printed or written with --out.",
    )
    options.add_store_option(dedup, "the store directory (default: $CLIPZERO_HOME/store)")
    dedup.add_argument("--threshold", "-t", type=float, metavar="T", help="the cosine similarity at which two "
                       "images become candidates (default: measured for the store's model family)")  # fmt: skip
    dedup.add_argument("--exact-only", action="store_true", help="only byte-identical files")
    dedup.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip the pixel check: the embedding cut alone decides (more merely similar images)")
    dedup.add_argument("--kinds", type=_kinds, metavar="K,K", help="only copies whose every kind is listed: "
                       "exact, resized, re-encoded, cropped, turned, edited (default: all)")  # fmt: skip
    dedup.add_argument("--out", "-o", type=Path, metavar="FILE", help="write the groups to FILE (.json or .csv)")
    dedup.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_dedup(args: argparse.Namespace, out: TextIO) -> int:
    from ..dedup import check_request, find_duplicates, write_report
    from ..store import EmbeddingStore

    check_request(args.threshold, args.out, verify=args.verify and not args.exact_only, kinds=args.kinds)
    with EmbeddingStore(options.existing_store(args)) as store:  # the request was checked before the store is read
        report = find_duplicates(store, args.threshold, exact_only=args.exact_only, verify=args.verify,
                                 kinds=args.kinds)  # fmt: skip
    if args.out is not None:
        write_report(report, args.out)
    if args.json:
        json.dump(report.to_dict(), out, ensure_ascii=False, indent=2)
        out.write("\n")
        return 0
    for number, group in enumerate(report.groups, 1):
        out.write(f"group {number} ({group.kind}): keep {group.keep.path} ({group.keep.width}x{group.keep.height})\n")
        for member in group.others:
            out.write(f"  {member.similarity:6.3f}  {_how(group.kind, member.match)}{member.path}\n")
    exact = sum(g.kind == "exact" for g in report.groups)
    out.write(f"{len(report.groups)} group(s) ({exact} exact, {len(report.groups) - exact} near) among "
              f"{report.images} image(s); {report.redundant} could go; candidate cut {report.threshold}"
              + (f"; written to {args.out}" if args.out else "") + "\n")  # fmt: skip
    return 0


def _kinds(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def _how(group_kind: str, match: Any) -> str:
    """``resized+cropped (kept 81%, turned 2.1°)``: what was done to a copy, before its path."""
    if match is None:
        return "exact  " if group_kind == "exact" else ""
    notes = [f"kept {match.kept_area:.0%}"] if "cropped" in match.kinds else []
    notes += [f"turned {match.angle:.1f}°"] if "turned" in match.kinds else []
    return "+".join(match.kinds) + (f" ({', '.join(notes)})" if notes else "") + "  "


COMMANDS = {"dedup": cmd_dedup}
