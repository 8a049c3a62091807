"""``clipzero prompts list|show|describe``: template sets, and LLM-written label descriptions."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    prompts = commands.add_parser("prompts", help="list or show prompt template sets")
    actions = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="list the built-in template sets")
    show = actions.add_parser("show", help="show a template set's prompts for a label")
    show.add_argument("name", metavar="NAME|PATH")
    show.add_argument("--label", default="{label}", help="fill the templates with this label")
    describe = actions.add_parser(
        "describe",
        help="ask an LLM what each label looks like; write a per-label template set",
        description="Write a template set whose prompts for each label are LLM-written visual descriptions "
        "(CuPL style), plus a plain template for every label. Use it with --templates FILE.",
    )
    options.add_labels_options(describe, required=True)
    describe.add_argument("--out", "-o", required=True, metavar="FILE", help="template set file to write (.json)")
    describe.add_argument("--language", choices=["en", "zh"], default="en")
    describe.add_argument("--count", type=int, default=5, help="descriptions per label (default 5)")
    options.add_llm_options(describe)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    from ..prompts import list_template_sets

    out.write("".join(name + "\n" for name in list_template_sets()))
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    from ..prompts import load_templates

    templates = load_templates(args.name)
    if args.label == "{label}":
        out.write("".join(template + "\n" for template in templates.templates))
        for label, prompts in templates.per_label.items():
            out.write("".join(f"[{label}] {p}\n" for p in prompts))
    else:
        out.write("".join(p + "\n" for p in templates.prompts_for(args.label)))
    return 0


def _describe(args: argparse.Namespace, out: TextIO) -> int:
    from ..factory import open_chat_client, resolve_labels
    from ..rerank.describe import describe_labels, write_description_set

    options.at_least(args, 1, "count", "llm_workers")
    labels = resolve_labels(args.labels, args.labels_file)
    client = open_chat_client(args.llm_url, args.llm_model, timeout=args.llm_timeout, retries=args.llm_retries,
                              cache=not args.no_llm_cache, purpose="prompts describe")  # fmt: skip
    described, failed = describe_labels(
        client, labels, template=f"describe-{args.language}", count=args.count, workers=args.llm_workers
    )
    for label, reason in failed.items():
        sys.stderr.write(f"clipzero: no descriptions for {label!r}: {reason}\n")
    path = write_description_set(args.out, described, language=args.language, model=client.model)
    out.write(f"{path}: descriptions for {len(described)} of {len(labels)} labels\n")
    return 0 if described else 1


_ACTIONS = {"list": _list, "show": _show, "describe": _describe}


def cmd_prompts(args: argparse.Namespace, out: TextIO) -> int:
    return _ACTIONS[args.prompts_command](args, out)


COMMANDS = {"prompts": cmd_prompts}
