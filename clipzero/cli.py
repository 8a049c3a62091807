"""The ``clipzero`` command: parse, call one public function, format.

Exit codes: 0 success; 1 the work failed (an image could not be read, a model could not be loaded); 2 the
request was wrong (bad flags, no labels, an unknown model or template set).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__, _cli_finetune, _cli_index, _cli_rerank, _cli_serve, _cli_tag
from .errors import ClipzeroError

__all__ = ["main"]


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        metavar="SPEC",
        help="model spec: ARCH:TAG, hf-hub:ORG/REPO, a directory, ARCH:FILE or a registered name "
        "(default: $CLIPZERO_MODEL, the config file, else the built-in default)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="weights precision (default: fp32; bf16 is about twice as fast on modern CPUs)",
    )
    parser.add_argument("--device", metavar="D", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--adapter", metavar="DIR", help="a LoRA adapter folder (clipzero finetune lora) merged into the model"
    )


def add_head_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head",
        metavar="PATH",
        help="classify with a trained head instead of zero-shot: a linear probe file or a cache adapter folder "
        "(clipzero finetune probe|cache); its classes are the labels",
    )


def make_classifier(encoder: Any, args: argparse.Namespace, templates: Any) -> Any:
    """The zero-shot classifier for --labels/--labels-file, or the trained one from --head."""
    from .zeroshot import ZeroShotClassifier, read_labels

    if getattr(args, "head", None):
        if args.labels or args.labels_file:
            raise _UsageError("--head brings its own labels: leave out --labels and --labels-file")
        from .finetune.heads import load_head

        return load_head(args.head, encoder)
    if not args.labels and not args.labels_file:
        raise _UsageError("give the labels: --labels L [L ...] or --labels-file F (or a trained --head)")
    labels = read_labels(args.labels_file) if args.labels_file else args.labels
    return ZeroShotClassifier(encoder, labels, templates=templates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipzero", description="Label images with free-text labels, zero-shot.")
    parser.add_argument("--version", action="version", version=f"clipzero {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    classify = commands.add_parser(
        "classify",
        help="label images with free-text labels",
        description="Label images with free-text labels, zero-shot.",
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    labels = classify.add_mutually_exclusive_group()
    labels.add_argument("--labels", "-l", nargs="+", metavar="L", help="candidate labels")
    labels.add_argument("--labels-file", "-f", metavar="F", help="file with one label per line (# comments)")
    _add_model_options(classify)
    add_head_option(classify)
    _cli_rerank.add_rerank_options(classify)
    classify.add_argument(
        "--templates",
        "-t",
        metavar="NAME|PATH",
        help="template set: photo, ensemble-en (default), ensemble-zh, openai-imagenet, or a file",
    )
    classify.add_argument("--top-k", "-k", type=int, default=5, metavar="K", help="labels per image (default 5)")
    classify.add_argument(
        "--threshold", type=float, metavar="P", help="no label ('none of these') when the top probability is below P"
    )
    classify.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    classify.add_argument("--json", action="store_true", help="print a JSON array, one object per image")
    classify.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    classify.add_argument(
        "--store",
        "-s",
        metavar="DIR",
        type=Path,
        help="reuse the embeddings of images already in this store (and its model)",
    )

    models = commands.add_parser("models", help="list the models that can be loaded, and which are cached")
    models.add_argument("--cached", action="store_true", help="only models that load without network")
    models.add_argument("--json", action="store_true", help="print JSON")

    info = commands.add_parser("info", help="parameters, memory by precision and FLOPs of a model")
    info.add_argument("model", nargs="?", metavar="MODEL", help="model spec (default: the configured model)")
    info.add_argument("--json", action="store_true", help="print JSON")

    _cli_tag.add_parser(commands, _add_model_options)
    _cli_index.add_parsers(commands, _add_model_options)
    _cli_finetune.add_parsers(commands, _add_model_options)
    _cli_serve.add_parser(commands, _add_model_options)

    prompts = commands.add_parser("prompts", help="list or show prompt template sets")
    prompt_commands = prompts.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    prompt_commands.add_parser("list", help="list the built-in template sets")
    show = prompt_commands.add_parser("show", help="show a template set's prompts for a label")
    show.add_argument("name", metavar="NAME|PATH")
    show.add_argument("--label", default="{label}", help="fill the templates with this label")
    _cli_rerank.add_describe_parser(prompt_commands)
    return parser


def _print_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


def _progress(total: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=quiet or not sys.stderr.isatty(), file=sys.stderr, leave=False)


def cmd_classify(args: argparse.Namespace, out: TextIO) -> int:
    from .config import load_settings
    from .models import load_model
    settings = load_settings()
    if args.top_k < 1 or args.batch_size < 1:
        raise _UsageError("--top-k and --batch-size must be at least 1")
    store = None
    if args.store is not None:
        from .store import EmbeddingStore

        store = EmbeddingStore(args.store)  # opened without a model: it only lends vectors
    encoder = load_model(
        args.model or (store.model_spec if store else settings.model),
        device=args.device or settings.device,
        precision=args.precision or settings.precision,
        adapter=args.adapter,
    )
    templates = args.templates or settings.templates
    classifier = make_classifier(encoder, args, templates)
    reranker = _cli_rerank.make_reranker(args, templates)
    top_k = max(args.top_k, reranker.top_k) if reranker is not None else args.top_k
    results = []
    with _progress(len(args.images), args.quiet) as bar:
        for start in range(0, len(args.images), args.batch_size):
            chunk = args.images[start : start + args.batch_size]
            results += classifier.classify(
                chunk,
                top_k=top_k,
                threshold=args.threshold,
                batch_size=args.batch_size,
                on_error="report",
                store=store,
            )
            bar.update(len(chunk))
    if reranker is not None:
        return _print_reranked(reranker.rerank_many(results), args, out)
    if args.json:
        _print_json([r.to_dict() for r in results], out)
    else:
        _print_table(results, out)
    return 1 if any(r.error for r in results) else 0


def _print_reranked(reranked: Sequence[Any], args: argparse.Namespace, out: TextIO) -> int:
    from .zeroshot import Prediction

    for r in reranked:
        r.predictions = r.predictions[: args.top_k]
    if args.json:
        rows = [r.to_dict() if r.clip.error is None else r.clip.to_dict() for r in reranked]
        _print_json(rows, out)
    else:
        final = [Prediction(r.image, r.label, r.predictions, r.clip.error) for r in reranked]
        _print_table(final, out)
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
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))


def _print_table(results: Sequence[Any], out: TextIO) -> None:
    width = min(max(_display_width(r.image) for r in results), 48)
    tops = [r.label if r.label is not None else "(none of these)" for r in results]
    label_width = min(max((_display_width(t) for r, t in zip(results, tops) if not r.error), default=0), 40)
    for r, top in zip(results, tops):
        if r.error:
            out.write(f"{_pad(r.image, width)}  ERROR  {r.error}\n")
            continue
        others = ", ".join(f"{p.label} {p.score:.3f}" for p in r.predictions)
        out.write(f"{_pad(r.image, width)}  {_pad(top, label_width)}  [{others}]\n")


def cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from .catalog import list_models

    entries = list_models(cached_only=args.cached)
    if not entries:
        sys.stderr.write("clipzero: no models are cached here yet\n")
    if args.json:
        _print_json([e.to_dict() for e in entries], out)
        return 0
    width = max((len(e.spec) for e in entries), default=10)
    for e in entries:
        note = f"  {e.description}" if e.description else ""
        out.write(f"{e.spec:<{width}}  {e.kind:<10}  {'cached' if e.cached else '-':<6}{note}\n")
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def _millions(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    from .config import load_settings
    from .encoder import default_precision, resolve_device
    from .modelinfo import describe_model

    info = describe_model(args.model)
    device = resolve_device(load_settings().device)
    fast = default_precision(device)
    if args.json:
        _print_json(
            {
                **info.to_dict(),
                "device": str(device),
                "tag_precision": fast,
                "classify_precision": load_settings().precision,
            },
            out,
        )
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
        ("memory", ", ".join(f"{k} {_mb(v)}" for k, v in info.memory_bytes.items()) + " (weights only)"),
        ("FLOPs", f"{info.gflops_image:.2f} GFLOP per image, {info.gflops_prompt:.2f} GFLOP per prompt"),
        ("precision", f"here ({device}): tag runs {fast} by default, classify {load_settings().precision}"),
    ]
    for key, value in rows:
        out.write(f"{key:<13} {value}\n")
    return 0


def cmd_prompts(args: argparse.Namespace, out: TextIO) -> int:
    from .prompts import list_template_sets, load_templates

    if args.prompts_command == "list":
        for name in list_template_sets():
            out.write(name + "\n")
        return 0
    templates = load_templates(args.name)
    if args.label == "{label}":
        for template in templates.templates:
            out.write(template + "\n")
        for label, prompts in templates.per_label.items():
            out.write("".join(f"[{label}] {p}\n" for p in prompts))
    else:
        out.write("".join(p + "\n" for p in templates.prompts_for(args.label)))
    return 0


class _UsageError(ClipzeroError):
    exit_code = 2


_COMMANDS = {
    "classify": cmd_classify,
    "models": cmd_models,
    "info": cmd_info,
    "prompts": lambda args, out: (
        _cli_rerank.cmd_describe(args, out) if args.prompts_command == "describe" else cmd_prompts(args, out)
    ),
    "tag": _cli_tag.cmd_tag,
    **_cli_index.handlers,
    "eval": _cli_finetune.cmd_eval,
    "finetune": _cli_finetune.cmd_finetune,
    "serve": _cli_serve.cmd_serve,
}


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    from .errors import ClipzeroWarning

    if issubclass(category, ClipzeroWarning):
        sys.stderr.write(f"clipzero: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        # OpenMP threads that spin between parallel regions rather than sleep keep the encoder's threads ready
        # between layers and batches: about 10% more images/s in batch tagging on 2 cores. They also spin while
        # idle, so a long-running server does without. Set before torch starts (nothing above imports it); a
        # value the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    logging.getLogger().setLevel(logging.ERROR)  # open_clip logs progress notes at warning level
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always")
        try:
            return _COMMANDS[args.command](args, sys.stdout)
        except ClipzeroError as exc:
            sys.stderr.write(f"clipzero: error: {exc}\n")
            return exc.exit_code
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stdout = open(os.devnull, "w")
            return 0
        except KeyboardInterrupt:
            sys.stderr.write("clipzero: interrupted\n")
            return 130
