"""Flags shared by several commands, and how they become factory calls.

One definition per flag: the same name, default and help at every command. Help texts state the real defaults,
which :mod:`clipzero.factory` and :mod:`clipzero.config` decide (flag > environment > config file > default).
Everything here that checks a request runs before any model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError

__all__ = [
    "add_calibration_option",
    "add_engine_options",
    "add_head_option",
    "add_labels_options",
    "add_llm_options",
    "add_model_options",
    "add_reject_options",
    "add_rerank_options",
    "at_least",
    "check_calibration",
    "check_model",
    "check_reject",
    "labels",
    "model_choice",
    "print_json",
    "progress",
    "reranker",
    "warn",
]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        metavar="SPEC",
        help="model spec: ARCH:TAG, hf-hub:ORG/REPO, a directory, ARCH:FILE or a registered name "
        "(default: $CLIPZERO_MODEL, the config file's model, else ViT-B-32-256:datacomp_s34b_b86k; offline, "
        "clipzero-shapes ships with clipzero)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="weights precision (default: $CLIPZERO_PRECISION, the config file, else auto: fp16 on CUDA, bf16 on "
        "CPUs with native bf16, else fp32)",
    )
    parser.add_argument(
        "--device",
        metavar="D",
        help="auto, cpu, cuda, cuda:N or mps (default: $CLIPZERO_DEVICE, the config file, else auto)",
    )
    parser.add_argument(
        "--adapter", metavar="DIR", help="a LoRA adapter folder (clipzero finetune lora) merged into the model"
    )


def add_labels_options(parser: argparse.ArgumentParser, required: bool = False, per_class: bool = False) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    text = "label text per class, in class-folder order" if per_class else "candidate labels, each its own "
    text += "" if per_class else "argument (one argument holding commas is split at them, as in the web UI)"
    group.add_argument("--labels", "-l", nargs="+", metavar="L", help=text)
    group.add_argument("--labels-file", "-f", metavar="F", help="file with one label per line (# comments)")


def add_head_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--head",
        metavar="PATH",
        help="classify with a trained head instead of zero-shot: a linear probe file or a cache adapter folder "
        "(clipzero finetune probe|cache); its classes are the labels",
    )


def add_templates_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--templates",
        "-t",
        metavar="NAME|PATH",
        help="template set: auto, photo, ensemble-en, ensemble-zh, openai-imagenet, ... or a file (default: "
        "$CLIPZERO_TEMPLATES, the config file, else auto: ensemble-en, and ensemble-zh for each Chinese label)",
    )


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM (any OpenAI-compatible server: LMDeploy, vLLM, Ollama, OpenAI)")
    group.add_argument("--llm-url", metavar="URL", help="API base URL, e.g. http://127.0.0.1:23333/v1 (default "
                       "$CLIPZERO_LLM_URL, else the config file's llm_url)")  # fmt: skip
    group.add_argument("--llm-model", metavar="NAME", help="served model name (default $CLIPZERO_LLM_MODEL, else "
                       "the config file's llm_model)")  # fmt: skip
    group.add_argument("--llm-timeout", type=float, default=60.0, metavar="S", help="seconds per request (default 60)")
    group.add_argument("--llm-retries", type=int, default=2, metavar="N", help="retries after a timeout or 5xx "
                       "(default 2)")  # fmt: skip
    group.add_argument("--llm-workers", type=int, default=4, metavar="N", help="requests in flight (default 4)")
    group.add_argument("--no-llm-cache", action="store_true", help="do not reuse or store LLM replies")


def add_rerank_options(parser: argparse.ArgumentParser, flag: bool = True) -> None:
    if flag:
        parser.add_argument("--rerank", action="store_true", help="re-rank CLIP's top candidates with an LLM")
    group = parser.add_argument_group("re-ranking")
    group.add_argument("--rerank-top-k", type=int, default=5, metavar="K", help="candidates shown to the LLM "
                       "(default 5)")  # fmt: skip
    group.add_argument("--rerank-template", metavar="NAME|FILE", help="cot-en or cot-zh (default: by the label "
                       "templates' language)")  # fmt: skip
    group.add_argument("--rerank-vision", action="store_true", help="send the image too (vision-language models)")
    add_llm_options(parser)


def add_reject_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group('"none of these"')
    group.add_argument("--threshold", type=float, metavar="P",
                       help="no label when the top probability is below P (a share among the labels: with few labels "
                       "it rarely rejects; see --reject)")  # fmt: skip
    group.add_argument("--reject", choices=["auto"], help="auto: no label when the image fits none of the labels (the "
                       "best label's similarity is under the model's calibrated cut); results carry the rejection "
                       "score and the nearest label")  # fmt: skip
    group.add_argument("--min-similarity", type=float, metavar="S", help="no label when the best label's cosine "
                       "similarity is below S (a raw cut; its scale depends on the model)")  # fmt: skip
    add_calibration_option(group)


def add_multilabel_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("every label that applies")
    group.add_argument("--multi-label", action="store_true", help="every label that applies to each image (maybe "
                       "none), each with its score and the region that scored it, decided per label by the model's "
                       "calibrated cut (--min-similarity: a raw cut instead)")  # fmt: skip
    group.add_argument("--views", type=int, metavar="N", help="with --multi-label, views of each image: 1 (the whole "
                       "image), 5 (and its quarters) or 10 (and a 3x3 grid of half-size crops; default); each view "
                       "costs about one image's encoding")  # fmt: skip


def check_multilabel(args: argparse.Namespace) -> None:
    """--multi-label and --views are valid with the other flags (no model needed)."""
    if getattr(args, "views", None) is not None and not args.multi_label:
        raise ConfigError("--views goes with --multi-label")
    if not getattr(args, "multi_label", False):
        return
    from ..multilabel import check_views

    check_views(args.views)
    clash = [flag for flag, value in (("--reject", args.reject), ("--threshold", args.threshold),
             ("--rerank", getattr(args, "rerank", False)), ("--head", getattr(args, "head", None)))
             if value]  # fmt: skip
    if clash:
        raise ConfigError(f"--multi-label decides each label on its own: leave out {', '.join(clash)} "
                          "(--min-similarity sets a raw cut on the best view)")  # fmt: skip
    if getattr(args, "engine", "local") == "ray":
        raise ConfigError("--multi-label runs on the local engine (leave out --engine ray)")


def add_calibration_option(parser: Any) -> None:
    parser.add_argument("--calibration", type=Path, metavar="FILE", help="a calibration file (clipzero calibrate): "
                        "its temperature scales the probabilities, its rejection cut serves --reject auto")  # fmt: skip


def check_calibration(args: argparse.Namespace) -> None:
    """A --calibration file that cannot be used fails now, not after the model loads."""
    if getattr(args, "calibration", None) is not None:
        from ..factory import open_calibration

        open_calibration(args.calibration)


def check_reject(args: argparse.Namespace) -> None:
    """The "none of these" flags are valid together (no model needed)."""
    from ..factory import check_threshold
    from ..rejection import check_reject as check

    check_threshold(args.threshold)
    check(args.reject, args.min_similarity)
    check_calibration(args)
    if (args.reject or args.min_similarity is not None) and getattr(args, "rerank", False):
        raise ConfigError("--rerank does not combine with --reject or --min-similarity: choose one way to say "
                          "'none of these'")  # fmt: skip


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local (threads and one model here; default) or ray (Ray Data: decode tasks and an "
                       "encoder actor pool, local or on a cluster)")  # fmt: skip
    group.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default $RAY_ADDRESS, else local)")
    group.add_argument("--ray-actors", type=int, metavar="N", help="encoder actors (default: GPUs, else CPUs / 2)")
    group.add_argument("--shard-rows", type=int, default=1000, metavar="N",
                       help="ray: rows per embedding shard and per durable write (default 1000)")  # fmt: skip


def add_store_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--store", "-s", metavar="DIR", type=Path, help=text)


def add_video_options(parser: argparse.ArgumentParser) -> None:
    from ..config import DEFAULT_VIDEO_EVERY_S

    parser.add_argument("--every", type=float, default=DEFAULT_VIDEO_EVERY_S, metavar="SECONDS",
                        help=f"video files: a frame every SECONDS (default {DEFAULT_VIDEO_EVERY_S:g}), plus one at "
                        "each scene change")  # fmt: skip
    parser.add_argument("--no-scenes", dest="scenes", action="store_false",
                        help="video files: no extra frames at scene changes")


def note_templates(classifier: Any, args: argparse.Namespace | None = None) -> None:
    """Say on stderr which templates Chinese labels took when no template set was given, and how a single label
    is answered."""
    note = getattr(classifier, "template_note", "")
    if note:
        sys.stderr.write(f"clipzero: {note}\n")
    from ..zeroshot import ZeroShotClassifier

    single = isinstance(classifier, ZeroShotClassifier) and len(classifier.labels) == 1
    if single and args is not None and not args.reject and args.min_similarity is None:
        sys.stderr.write("clipzero: one label: each image gets it or 'none of these', by the model's calibrated "
                         "similarity cut (as --reject auto; --min-similarity S sets the cut)\n")


def default_store() -> Path:
    """$CLIPZERO_HOME/store: the store a command uses without --store."""
    from ..config import home

    return home() / "store"


def existing_store(args: argparse.Namespace) -> Path:
    """The store directory asked for (--store, else the default), which must already hold a store."""
    from ..errors import StoreError

    path: Path = args.store or default_store()
    if not (path / "store.sqlite").exists():
        raise StoreError(f"no store at {path}: create one with `clipzero index add PATH --store {path}`")
    return path


# -- checks, before any model loads ------------------------------------------------------------------------------
def input_images(args: argparse.Namespace) -> list[str]:
    """The image and video files ``args.paths`` name (folders listed), checked before any model loads.

    Raises:
        ConfigError (exit 2): a path that does not exist, or no image among the paths.
    """
    import os

    from ..errors import ConfigError
    from ..formats import VIDEO_SUFFIXES
    from ..images import IMAGE_SUFFIXES, find_images

    _refuse_missing(args.paths, "no such file or folder")
    paths = find_images(args.paths, recursive=args.recursive, videos=True)
    if not paths:
        deeper = (" (sub-folders are not read: add --recursive)"
                  if not args.recursive and any(os.path.isdir(p) and any(e.is_dir() for e in os.scandir(p))
                                                for p in args.paths) else "")  # fmt: skip
        endings = " ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        raise ConfigError(f"no images found under {', '.join(args.paths)}{deeper}; formats read: {endings}")
    return paths


def _refuse_missing(paths: list[str], words: str) -> None:
    """ConfigError (exit 2) naming the first five of ``paths`` that do not exist, and how many more."""
    import os

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConfigError(f"{words}: {', '.join(missing[:5])}{more}")


def image_files(paths: list[str]) -> None:
    """Each of ``paths`` is an existing file, checked before any model loads (exit 2 otherwise). Whether a file is
    a readable picture is found when it is read: that is an error in place for that image."""
    import os

    _refuse_missing(paths, "no such file")
    folders = [p for p in paths if os.path.isdir(p)]
    if folders:
        raise ConfigError(f"{folders[0]} is a folder: classify takes image files; for a folder use "
                          f"`clipzero tag {folders[0]} --labels ... --out results.jsonl`")  # fmt: skip


def check_every(args: argparse.Namespace) -> None:
    """--every is a positive number of seconds (exit 2 otherwise)."""
    from ..errors import ConfigError

    if not args.every > 0:
        raise ConfigError(f"--every {args.every}: a number of seconds above 0")


def at_least(args: argparse.Namespace, minimum: int = 1, *names: str) -> None:
    """Each named integer flag that was given is at least ``minimum`` (exit 2 otherwise)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def labels(args: argparse.Namespace) -> list[str] | None:
    """The labels of --labels/--labels-file, validated; None with --head (which brings its own)."""
    from ..factory import resolve_labels

    if getattr(args, "head", None):
        if args.labels or args.labels_file:
            raise ConfigError("--head brings its own labels: leave out --labels and --labels-file")
        return None
    return resolve_labels(args.labels, args.labels_file)


def model_choice(args: argparse.Namespace, store: Path | None = None) -> Any:
    """The :class:`~clipzero.factory.ModelChoice` of the model flags (and an existing store's own model)."""
    from ..factory import resolve_model

    return resolve_model(
        getattr(args, "model", None),
        device=getattr(args, "device", None),
        precision=getattr(args, "precision", None),
        adapter=getattr(args, "adapter", None),
        store=store,
    )


def check_model(args: argparse.Namespace, store: Path | None = None) -> Any:
    """:func:`model_choice`, checked against this machine's devices (imports torch; loads nothing)."""
    from ..factory import check_model as check

    return check(model_choice(args, store))


def reranker(args: argparse.Namespace, templates: Any) -> Any:
    """The factory's re-ranker for the --rerank flags (None without --rerank)."""
    if not getattr(args, "rerank", False):
        return None
    from ..factory import open_reranker

    return open_reranker(
        templates,
        llm_url=args.llm_url,
        llm_model=args.llm_model,
        template=args.rerank_template,
        vision=args.rerank_vision,
        top_k=args.rerank_top_k,
        workers=args.llm_workers,
        timeout=args.llm_timeout,
        retries=args.llm_retries,
        cache=not args.no_llm_cache,
    )


# -- output ------------------------------------------------------------------------------------------------------
def print_json(data: Any, out: TextIO) -> None:
    json.dump(data, out, ensure_ascii=False, indent=2)
    out.write("\n")


def progress(total: int, quiet: bool, own_speed: bool = False) -> Any:
    """A progress bar on stderr, silent under --quiet and when stderr is not a terminal.

    Args:
        own_speed: the command shows its own images/s as the bar's postfix; tqdm's rate (bar updates over wall
            time, a different figure) is then left out, so the bar shows one speed.
    """
    from tqdm import tqdm

    layout = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]" if own_speed else None
    return tqdm(total=total, unit="img", disable=quiet or not sys.stderr.isatty(), file=sys.stderr, leave=False,
                bar_format=layout)  # fmt: skip


def warn(text: str) -> None:
    """A warning on stderr (shown under --quiet too)."""
    sys.stderr.write(f"clipzero: warning: {text}\n")


def say(args: argparse.Namespace, text: str) -> None:
    """A note on stderr (silent under --quiet)."""
    if not getattr(args, "quiet", False):
        sys.stderr.write(f"clipzero: {text}\n")


def describe_encoder(encoder: Any) -> str:
    """``model X, precision P on D``: what each command reports about the model it ran."""
    return f"model {encoder.id}, precision {encoder.precision} on {encoder.device}"


def add_xmp_options(parser: Any) -> None:
    """The XMP keywords' parent and the sidecars' naming (export --to xmp, tag --xmp)."""
    parser.add_argument("--parent", default="clipzero", metavar="NAME",
                        help="the parent of the hierarchical keywords (default: clipzero, as clipzero|red circle)")
    parser.add_argument("--naming", choices=["darktable", "lightroom"], default="darktable",
                        help="sidecar names: photo.jpg.xmp (darktable, digiKam; default) or photo.xmp (Lightroom)")


def write_xmp(rows: list[dict[str, Any]], args: argparse.Namespace, in_place: bool = False) -> Any:
    """Each row's labels as XMP keywords, with the command's --parent, --naming and --min-score."""
    from ..export import export_xmp

    return export_xmp(rows, parent=args.parent, naming=args.naming, in_place=in_place,
                      min_score=getattr(args, "min_score", None))  # fmt: skip


def say_exported(report: Any) -> None:
    """Each failed image on stderr, then one line of counts."""
    for image, reason in report.failed:
        sys.stderr.write(f"clipzero: {image}: {reason}\n")
    sys.stderr.write(f"clipzero: exported {len(report.written)} file(s), {len(report.unchanged)} already up to date, "
                     f"{len(report.failed)} failed\n")  # fmt: skip
