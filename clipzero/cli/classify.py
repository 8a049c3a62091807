"""``clipzero classify``: label a few images and print a table or JSON."""

from __future__ import annotations

import argparse
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(commands: Any) -> None:
    classify = commands.add_parser(
        "classify",
        help="label images with free-text labels",
        description="Label images with free-text labels, zero-shot.",
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    options.add_labels_options(classify)
    options.add_model_options(classify)
    options.add_head_option(classify)
    options.add_rerank_options(classify)
    options.add_templates_option(classify)
    classify.add_argument("--top-k", "-k", type=int, default=5, metavar="K", help="labels per image (default 5)")
    options.add_reject_options(classify)
    options.add_multilabel_options(classify)
    classify.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    classify.add_argument("--json", action="store_true", help="print a JSON array, one object per image")
    classify.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    classify.add_argument("--server", metavar="URL", help="classify on a running clipzero serve at URL (default "
                          "$CLIPZERO_SERVER; its key from $CLIPZERO_API_KEY): the model stays loaded between calls; "
                          "the images are read here and sent; without a server there, classify here")  # fmt: skip
    classify.add_argument(
        "--store",
        "-s",
        metavar="DIR",
        type=Path,
        help="reuse the embeddings of images already in this store (and its model)",
    )


def cmd_classify(args: argparse.Namespace, out: TextIO) -> int:
    from ..factory import open_classifier, open_encoder, resolve_templates

    options.at_least(args, 1, "top_k", "batch_size")
    options.check_reject(args)
    options.check_multilabel(args)
    options.image_files(args.images)
    labels = options.labels(args)
    templates = resolve_templates(args.templates)
    server = args.server or os.environ.get("CLIPZERO_SERVER")
    if server:
        served = _on_server(args, server, labels, templates)
        if served is not None:
            return _print(served, args, out)
    store = None
    if args.store is not None:
        from ..store import EmbeddingStore

        store = EmbeddingStore(args.store)  # opened without a model: it only lends vectors
    reranker = options.reranker(args, templates)
    choice = options.check_model(args, args.store)
    encoder = open_encoder(choice)
    classifier = open_classifier(encoder, labels, head=args.head, templates=templates, calibration=args.calibration)
    options.note_templates(classifier, args)
    top_k = max(args.top_k, reranker.top_k) if reranker is not None else args.top_k
    results = []
    with options.progress(len(args.images), args.quiet) as bar:
        for start in range(0, len(args.images), args.batch_size):
            chunk = args.images[start : start + args.batch_size]
            results += classifier.classify(
                chunk, top_k=top_k, threshold=args.threshold, batch_size=args.batch_size, on_error="report",
                store=store, reject=args.reject, min_similarity=args.min_similarity, multi_label=args.multi_label,
                views=args.views,
            )  # fmt: skip
            bar.update(len(chunk))
    if store is not None:
        store.close()
    options.say(args, f"classified {len(results)} image(s); {options.describe_encoder(encoder)}")
    if reranker is not None:
        return _print_reranked(reranker.rerank_many(results), args, out)
    return _print(results, args, out)


def _print(results: Sequence[Any], args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        options.print_json([r.to_dict() for r in results], out)
    else:
        print_table(results, out)
    return 1 if any(r.error for r in results) else 0


def _on_server(args: argparse.Namespace, server: str, labels: list[str] | None, templates: Any) -> Any:
    """The results from the server, or None (with a warning saying why) to classify here instead."""
    from ..prompts import list_template_sets
    from ..remote import ServerUnavailable, classify_on_server, server_info

    local_only = [flag for flag, value in (("--store", args.store), ("--head", args.head), ("--rerank", args.rerank),
                  ("--calibration", args.calibration), ("--adapter", args.adapter)) if value]  # fmt: skip
    if templates.per_label and templates.name not in list_template_sets():
        local_only.append("--templates with per-label prompts")
    if local_only or not labels:
        options.warn(f"--server: {', '.join(local_only) or 'a trained head'} is not sent to a server; classifying here")
        return None
    key = os.environ.get("CLIPZERO_API_KEY")
    try:
        info = server_info(server, key)
        if args.model and args.model not in (info["spec"], info["model"]):
            options.warn(f"the server at {server} runs {info['spec']}, not {args.model}; classifying here")
            return None
        if args.precision and args.precision not in ("auto", info["precision"]):
            options.warn(f"the server at {server} runs {info['precision']}, not {args.precision}; classifying here")
            return None
        sent = templates.name if templates.name in list_template_sets() else list(templates.templates)
        results = classify_on_server(server, args.images, labels, templates=sent, top_k=args.top_k,
                                     threshold=args.threshold, reject=args.reject, min_similarity=args.min_similarity,
                                     key=key, info=info, multi_label=args.multi_label, views=args.views)  # fmt: skip
    except ServerUnavailable as exc:
        options.warn(f"{exc}; classifying here")
        return None
    options.say(args, f"classified {len(results)} image(s) on {server}; model {info['model']}, precision "
                f"{info['precision']} on {info['device']}")  # fmt: skip
    return results


def _print_reranked(reranked: Sequence[Any], args: argparse.Namespace, out: TextIO) -> int:
    from ..zeroshot import Prediction

    for r in reranked:
        r.predictions = r.predictions[: args.top_k]
    if args.json:
        options.print_json([r.to_dict() if r.clip.error is None else r.clip.to_dict() for r in reranked], out)
    else:
        print_table([Prediction(r.image, r.label, r.predictions, r.clip.error) for r in reranked], out)
        for r in reranked:
            if r.clip.error is not None:
                continue
            if r.reranked:
                picked = r.label if r.label is not None else "none of these"
                note = "agrees with CLIP" if r.label == r.clip.label else f"CLIP said {r.clip.label!r}"
                out.write(f"  {r.image}: LLM chose {picked!r} ({note}){' [cached]' if r.cached else ''}\n")
            else:
                out.write(f"  {r.image}: CLIP's order kept: {r.fallback}\n")
    return 1 if any(r.clip.error for r in reranked) else 0


def _display_width(text: str) -> int:
    """Terminal columns: East Asian wide and full-width characters (Chinese labels) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def print_table(results: Sequence[Any], out: TextIO) -> None:
    width = min(max(_display_width(r.image) for r in results), 48)
    tops = [r.label if r.label is not None else "(none of these)" for r in results]
    label_width = min(max((_display_width(t) for r, t in zip(results, tops) if not r.error), default=0), 40)
    for r, top in zip(results, tops):
        if r.error:
            out.write(f"{_pad(r.image, width)}  ERROR  {r.error}\n")
            continue
        if r.tags is not None:  # multi-label: every label that applies, with its score
            found = ", ".join(f"{t.label} {t.score:.2f}" for t in r.tags) or "(none of these)"
            out.write(f"{_pad(r.image, width)}  {found}\n")
            continue
        others = ", ".join(f"{p.label} {p.score:.3f}" for p in r.predictions)
        fit = f"fit {r.rejection.score:+.2f}  " if r.rejection is not None else ""
        out.write(f"{_pad(r.image, width)}  {_pad(top, label_width)}  {fit}[{others}]\n")


COMMANDS = {"classify": cmd_classify}
