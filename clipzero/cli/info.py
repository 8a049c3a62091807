"""``clipzero models``, ``clipzero info`` and ``clipzero examples``: what can be loaded here, what a model costs,
and the example images to try the bundled one on."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    models = commands.add_parser("models", help="list the models that can be loaded, and which are cached")
    models.add_argument("--cached", action="store_true", help="only models that load without network")
    models.add_argument("--chinese", action="store_true", help="only models that read Chinese, with their published "
                        "zero-shot figures and sources")  # fmt: skip
    models.add_argument("--json", action="store_true", help="print JSON")

    info = commands.add_parser("info", help="parameters, memory by precision and FLOPs of a model")
    info.add_argument("model", nargs="?", metavar="MODEL", help="model spec (default: the configured model)")
    info.add_argument("--json", action="store_true", help="print JSON")

    examples = commands.add_parser(
        "examples",
        help="write the example images and label files of the quickstart",
        description="Write the 8 example images of the bundled model's shapes world and the English and Chinese label "
        "files (every colour x shape) into a folder.",
    )
    examples.add_argument("--out", "-o", type=Path, default=Path("examples"), metavar="DIR",
                          help="the folder (default ./examples)")  # fmt: skip


def cmd_examples(args: argparse.Namespace, out: TextIO) -> int:
    from ..synthetic.examples import write_examples

    for path in write_examples(args.out):
        out.write(f"{path}\n")
    out.write(f"{args.out / 'labels-en.txt'}\n{args.out / 'labels-zh.txt'}\n")
    return 0


def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from ..catalog import list_models

    entries = [e for e in list_models(cached_only=args.cached) if e.chinese or not args.chinese]
    if not entries:
        sys.stderr.write("clipzero: no models are cached here yet\n")
    if args.json:
        options.print_json([e.to_dict() for e in entries], out)
        return 0
    width = max((len(e.spec) for e in entries), default=10)
    for e in entries:
        note = f"  {e.description}" if e.description else ""
        out.write(f"{e.spec:<{width}}  {e.kind:<12}  {'cached' if e.cached else '-':<6}  "
                  f"{'中文' if e.chinese else '  '}{note}\n")  # fmt: skip
    return 0


def _millions(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    from ..encoder import resolve_device
    from ..factory import check_model, resolve_model
    from ..modelinfo import describe_model, format_bytes

    choice = check_model(resolve_model(args.model))  # the precision and device every command would use here
    device = str(resolve_device(choice.device))
    info = describe_model(choice.spec)
    if args.json:
        options.print_json({**info.to_dict(), "device": device, "precision": choice.precision}, out)
        return 0
    weights = "" if info.weights_loaded else "  (weights not cached here: figures from the architecture)"
    rows = [
        ("model", f"{info.id}{weights}"),
        ("architecture", info.arch),
        ("embedding", f"{info.embed_dim}-d; images {info.image_size} px; text context {info.context_length} tokens"),
        (
            "parameters",
            f"image {_millions(info.params_image)}, text {_millions(info.params_text)}, "
            f"total {_millions(info.params_total)}",
        ),
        ("memory", ", ".join(f"{k} {format_bytes(v)}" for k, v in info.memory_bytes.items()) + " (weights only)"),
        ("FLOPs", f"{info.gflops_image:.2f} GFLOP per image, {info.gflops_prompt:.2f} GFLOP per prompt"),
        ("precision", f"{choice.precision} on {device} (every command's default here; --precision changes it)"),
    ]
    for key, value in rows:
        out.write(f"{key:<13} {value}\n")
    return 0


COMMANDS = {"examples": cmd_examples, "models": cmd_models, "info": cmd_info}
