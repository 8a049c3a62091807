"""Command-line options for the LLM re-ranker, and `clipzero prompts describe`."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

__all__ = ["add_describe_parser", "add_llm_options", "add_rerank_options", "cmd_describe", "make_reranker"]


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM (any OpenAI-compatible server: LMDeploy, vLLM, Ollama, OpenAI)")
    group.add_argument(
        "--llm-url", metavar="URL", help="API base URL, e.g. http://127.0.0.1:23333/v1 (default $CLIPZERO_LLM_URL)"
    )
    group.add_argument("--llm-model", metavar="NAME", help="served model name (default $CLIPZERO_LLM_MODEL)")
    group.add_argument("--llm-timeout", type=float, default=60.0, metavar="S", help="seconds per request (default 60)")
    group.add_argument(
        "--llm-retries", type=int, default=2, metavar="N", help="retries after a timeout or 5xx (default 2)"
    )
    group.add_argument("--llm-workers", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    group.add_argument("--no-llm-cache", action="store_true", help="do not reuse or store LLM replies")


def add_rerank_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rerank", action="store_true", help="re-rank CLIP's top candidates with an LLM")
    group = parser.add_argument_group("re-ranking")
    group.add_argument(
        "--rerank-top-k", type=int, default=5, metavar="K", help="candidates shown to the LLM (default 5)"
    )
    group.add_argument(
        "--rerank-template", metavar="NAME|FILE", help="cot-en or cot-zh (default: by the label template language)"
    )
    group.add_argument("--rerank-vision", action="store_true", help="send the image too (vision-language models)")
    add_llm_options(parser)


def _client(args: argparse.Namespace) -> Any:
    from .rerank.client import client_from_env

    return client_from_env(
        args.llm_url,
        args.llm_model,
        timeout=args.llm_timeout,
        retries=args.llm_retries,
        cache=not args.no_llm_cache,
    )


def make_reranker(args: argparse.Namespace, templates: Any) -> Any:
    """The Reranker for --rerank (None without it); label descriptions come from a per-label template set."""
    if not getattr(args, "rerank", False):
        return None
    from .prompts import load_templates
    from .rerank.describe import read_descriptions
    from .rerank.reranker import Reranker

    chosen = load_templates(templates)
    text = "".join(chosen.templates) + "".join(chosen.per_label)
    chinese = chosen.language == "zh" or any("\u4e00" <= ch <= "\u9fff" for ch in text)
    template = args.rerank_template or ("cot-zh" if chinese else "cot-en")
    return Reranker(
        _client(args),
        template,
        vision=args.rerank_vision,
        top_k=args.rerank_top_k,
        descriptions=read_descriptions(chosen),
        workers=args.llm_workers,
    )


def add_describe_parser(prompt_commands: Any) -> None:
    describe = prompt_commands.add_parser(
        "describe",
        help="ask an LLM what each label looks like; write a per-label template set",
        description="Write a template set whose prompts for each label are LLM-written visual descriptions "
        "(CuPL style), plus a plain template for every label. Use it with --templates FILE.",
    )
    labels = describe.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", "-l", nargs="+", metavar="L")
    labels.add_argument("--labels-file", "-f", metavar="F")
    describe.add_argument("--out", "-o", required=True, metavar="FILE", help="template set file to write (.json)")
    describe.add_argument("--language", choices=["en", "zh"], default="en")
    describe.add_argument("--count", type=int, default=5, help="descriptions per label (default 5)")
    add_llm_options(describe)


def cmd_describe(args: argparse.Namespace, out: TextIO) -> int:
    from .rerank.describe import describe_labels, write_description_set
    from .zeroshot import clean_labels, read_labels

    labels = clean_labels(read_labels(args.labels_file) if args.labels_file else args.labels)
    client = _client(args)
    described, failed = describe_labels(
        client, labels, template=f"describe-{args.language}", count=args.count, workers=args.llm_workers
    )
    for label, reason in failed.items():
        sys.stderr.write(f"clipzero: no descriptions for {label!r}: {reason}\n")
    path = write_description_set(args.out, described, language=args.language, model=client.model)
    out.write(f"{path}: descriptions for {len(described)} of {len(labels)} labels\n")
    return 0 if described else 1
