"""``clipzero export``: a result file's tags where photos live: XMP keywords for photo managers, or one folder per
label for datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="put a result file's labels where photos live: XMP keywords, or one folder per label",
        description="--to xmp: each image's labels become keywords (dc:subject, and lr:hierarchicalSubject under "
        "--parent) in its XMP sidecar, merged with what is there: a person's keywords stay, an earlier run's are "
        "replaced, a rerun changes nothing (needs the xmp extra). --to folders OUT: the ImageFolder layout, one "
        "folder per label ('none of these' for the rest), ready for `clipzero finetune probe OUT`. A problem with one "
        "image is reported and the rest go on.",
    )
    export.add_argument("results", type=Path, metavar="RESULTS", help="a result file of `clipzero tag`")
    export.add_argument("--to", required=True, nargs="+", metavar="WHERE", help="where the labels go: xmp (beside "
                        "each image), or folders OUT (the folder to fill)")  # fmt: skip
    export.add_argument("--min-score", type=float, metavar="S", help="leave out labels scored under S")
    export.add_argument("--copy", action="store_true", help="--to folders: copy the images (default: link them)")
    options.add_xmp_options(export)
    export.add_argument("--in-place", action="store_true", help="--to xmp: write the keywords into the image files "
                        "themselves instead of sidecars (the pixels are not touched)")  # fmt: skip
    export.add_argument("--json", action="store_true", help="print the report as JSON")


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from ..errors import ConfigError
    from ..export import export_folders
    from ..extras import require
    from ..outputs import read_results

    where, *rest = args.to
    if where not in ("xmp", "folders"):
        raise ConfigError(f"--to {where}: not a place to export to (xmp, or folders OUT)")
    if where == "folders" and len(rest) != 1:
        raise ConfigError("--to folders needs the one folder to fill: clipzero export RESULTS --to folders OUT")
    if where == "xmp" and (rest or args.copy):
        raise ConfigError("--to xmp writes beside each image: no OUT folder, no --copy")
    if args.in_place and where != "xmp":
        raise ConfigError("--in-place is for --to xmp")
    if where == "xmp":
        require("xmp", "--to xmp")
    if not args.results.is_file():
        raise ConfigError(f"{args.results}: no such result file")
    rows = read_results(args.results)
    if where == "folders":
        report = export_folders(rows, Path(rest[0]), copy=args.copy, min_score=args.min_score)
    else:
        report = options.write_xmp(rows, args, in_place=args.in_place)
    return _report(report, args, out)


def _report(report: Any, args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        json.dump(report.to_dict(), out, ensure_ascii=False, indent=2)
        out.write("\n")
    options.say_exported(report)
    return 1 if report.failed and not report.written and not report.unchanged else 0


COMMANDS = {"export": cmd_export}
