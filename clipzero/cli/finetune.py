"""``clipzero eval`` and ``clipzero finetune probe|cache|lora``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from . import options

__all__ = ["COMMANDS", "add_parsers"]


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a folder of class folders (ROOT/<class>/*, or train/ val/ test/ each holding class folders), or a "
        "hub dataset ORG/NAME[:CONFIG] (fetched once, then read locally)",
    )
    options.add_labels_options(parser, per_class=True)
    options.add_templates_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling the shots (default 0)")
    parser.add_argument("--store", "-s", type=Path, metavar="DIR", help="embedding store: images are embedded once")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _multilabel_options(parser: argparse.ArgumentParser, text: str) -> None:
    group = parser.add_argument_group("multi-label sets")
    group.add_argument("--multi-label", action="store_true", help=text + "; DATA is then a CSV (path,labels: labels "
                       "joined by ';') or a folder of label folders, where one picture may sit in several")  # fmt: skip
    group.add_argument("--views", type=int, metavar="N", help="with --multi-label: views of each image (1, 5 or 10; "
                       "default 10)")  # fmt: skip


def _multilabel(args: argparse.Namespace, out: TextIO, fit: bool) -> int:
    """``eval --multi-label`` and ``calibrate --multi-label``."""
    from ..calibration import Calibration
    from ..factory import open_calibration, open_classifier, open_encoder, resolve_labels, resolve_templates
    from ..finetune.multilabel_eval import calibrate_multilabel, evaluate_multilabel, load_multilabel
    from ..multilabel import check_views

    views = check_views(args.views)
    labels = resolve_labels(args.labels, args.labels_file) if (args.labels or args.labels_file) else None
    templates = resolve_templates(args.templates)
    calibration = None if fit else open_calibration(getattr(args, "calibration", None))
    data = load_multilabel(args.data, labels)
    encoder = open_encoder(options.check_model(args))
    classifier = open_classifier(encoder, data.labels, templates=templates, calibration=calibration)
    if fit:
        rule, report = calibrate_multilabel(classifier, data, views, seed=args.seed, say=_say(args))
        Calibration(encoder.id, multi_label=rule, fitted_on={"dataset": str(args.data), **report}).save(args.out)
        figures = {"calibrated": report["calibrated"], "reference": report["reference"]}
    else:
        report = evaluate_multilabel(classifier, data, views, say=_say(args))
        figures = {report["rule"]: report}
    if args.json:
        json.dump(report, out, indent=1, ensure_ascii=False)
        out.write("\n")
        return 0
    for name, found in figures.items():
        out.write(f"{name} cuts, {found['images']} images, {found['labels']} labels, {views} views: mAP "
                  f"{found['map']}, micro-F1 {found['micro_f1']}, macro-F1 {found['macro_f1']}, exact set "
                  f"{found['exact_set']}\n")  # fmt: skip
    if fit:
        out.write(f"wrote {args.out}; use it with --multi-label --calibration {args.out}\n")
    return 0


def _lora_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LoRA")
    group.add_argument("--rank", type=int, default=8, help="adapter rank (default 8)")
    group.add_argument("--alpha", type=int, default=16, help="adapter scaling alpha (default 16)")
    group.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    group.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    group.add_argument("--lora-batch-size", type=int, default=32, metavar="N", help="images per step (default 32)")
    group.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast where the CPU "
                       "computes bf16 natively, else fp32)")  # fmt: skip


def add_parsers(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure zero-shot and adapted accuracy on a labelled image set",
        description="Few-shot adaptation, evaluated honestly: training images, a disjoint set to choose settings "
        "on, and a test set no method trains on. Reports top-1, top-5, per-class recall, calibration (ECE) and "
        "a confusion matrix per method.",
    )
    _data_options(evaluate)
    options.add_model_options(evaluate)
    evaluate.add_argument(
        "--method",
        nargs="+",
        default=["zeroshot"],
        choices=["zeroshot", "probe", "cache", "lora", "zeroshot+rerank"],
        help="methods to compare (default zeroshot); zeroshot+rerank needs an LLM (--llm-url, --llm-model)",
    )
    evaluate.add_argument("--shots", type=int, default=16, metavar="K", help="training images per class (default 16)")
    evaluate.add_argument("--out", "-o", type=Path, metavar="FILE", help="write the report (JSON) and confusion PNGs")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--out-of-set", type=Path, metavar="DIR", help="images that fit none of the classes: "
                          "zero-shot's rejection figures (AUROC, kept, rejected) are reported")  # fmt: skip
    _lora_options(evaluate)
    options.add_rerank_options(evaluate, flag=False)
    _multilabel_options(evaluate, "measure multi-label tagging: mAP, micro- and macro-F1, exact-set accuracy and a "
                        "per-label table")  # fmt: skip
    options.add_calibration_option(evaluate)

    calibrate = commands.add_parser(
        "calibrate",
        help="fit calibrated probabilities (and a rejection cut) on a labelled image set",
        description="Fit a temperature on up to 2 x --shots images per class (never the test split) so that the "
        "probabilities say how often the label is right, and, with --out-of-set, the similarity cut for --reject "
        "auto. Reports ECE before and after (and the rejection figures) on the test split. Use the file with "
        "--calibration FILE wherever a classifier runs.",
    )
    _data_options(calibrate)
    options.add_model_options(calibrate)
    calibrate.add_argument("--out", "-o", type=Path, required=True, metavar="FILE", help="the calibration file (JSON)")
    calibrate.add_argument("--shots", type=int, default=16, metavar="K", help="images per class to fit on, twice "
                           "(default 16)")  # fmt: skip
    calibrate.add_argument("--out-of-set", type=Path, metavar="DIR", help="images that fit none of the classes: "
                           "half fit the rejection cut, half measure it")  # fmt: skip
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    _multilabel_options(calibrate, "fit the multi-label cuts (a common one, and one per label with enough images) "
                        "on half of the set and measure them on the other half")  # fmt: skip

    finetune = commands.add_parser("finetune", help="train a linear probe, a cache adapter or LoRA adapters")
    kinds = finetune.add_subparsers(dest="finetune_command", metavar="METHOD", required=True)
    for name, text, out_help in (
        ("probe", "logistic regression on frozen embeddings", "head file to write (.safetensors)"),
        ("cache", "a training-free few-shot cache of labelled embeddings", "adapter folder to write"),
        ("lora", "LoRA adapters on the image tower", "adapter folder to write"),
    ):
        sub = kinds.add_parser(
            name,
            help=text,
            description=f"Train {text}; use the result with {'--adapter' if name == 'lora' else '--head'}.",
        )
        _data_options(sub)
        options.add_model_options(sub)
        sub.add_argument("--out", "-o", type=Path, required=True, metavar="PATH", help=out_help)
        sub.add_argument("--shots", type=int, metavar="K", help="training images per class (default: all of train)")
        if name == "lora":
            _lora_options(sub)


def _lora_settings(args: argparse.Namespace) -> Any:
    from ..finetune.lora import LoraSettings

    return LoraSettings(
        rank=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        steps=args.steps,
        batch_size=args.lora_batch_size,
        bf16=False if args.no_bf16 else None,
        seed=args.seed,
    )


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, Any]:
    """(dataset, encoder, labels, store, templates) for a command; the request is checked before the model loads."""
    from ..factory import open_encoder, open_store, resolve_labels, resolve_templates
    from ..finetune.data import load_labeled

    options.at_least(args, 1, "shots", "steps", "rank", "lora_batch_size")
    labels = resolve_labels(args.labels, args.labels_file) if (args.labels or args.labels_file) else None
    templates = resolve_templates(args.templates)
    if getattr(args, "finetune_command", None) == "lora" or "lora" in getattr(args, "method", []):
        from ..extras import require

        require("finetune", "LoRA fine-tuning")
        if args.adapter:
            raise _usage("LoRA trains on the base model: leave out --adapter")
    choice = options.check_model(args, args.store)
    data = load_labeled(args.data)
    store = open_store(args.store, choice) if args.store is not None else None
    encoder = store.encoder if store is not None else open_encoder(choice)
    return data, encoder, labels, store, templates


def _say(args: argparse.Namespace) -> Any:
    def say(text: str) -> None:
        if not args.quiet:
            sys.stderr.write(f"clipzero: {text}\n")

    return say


def _out_of_set(args: argparse.Namespace) -> list[str]:
    """The out-of-set images (checked before any model loads)."""
    if args.out_of_set is None:
        return []
    from ..errors import DatasetError
    from ..images import find_images

    if not args.out_of_set.is_dir():
        raise _usage(f"--out-of-set {args.out_of_set} is not a folder")
    found = find_images([args.out_of_set], recursive=True)
    if len(found) < 2:
        raise DatasetError(f"--out-of-set {args.out_of_set} holds {len(found)} image(s): give at least two")
    return found


def cmd_calibrate(args: argparse.Namespace, out: TextIO) -> int:
    from ..finetune.calibrate import calibrate

    if args.multi_label:
        return _multilabel(args, out, fit=True)

    options.at_least(args, 1, "shots")
    outside = _out_of_set(args)
    data, encoder, labels, store, templates = _setup(args)
    try:
        calibration, report = calibrate(data, encoder, labels=labels, templates=templates, shots=args.shots,
                                        seed=args.seed, out_of_set=outside, store=store, say=_say(args))  # fmt: skip
    finally:
        if store is not None:
            store.close()
    calibration.save(args.out)
    if args.json:
        json.dump(report, out, indent=1, ensure_ascii=False)
        out.write("\n")
        return 0
    out.write(f"{report['dataset']}: temperature {report['temperature']:.3f} from {report['fit_images']} images; "
              f"on {report['test_images']} test images: top-1 {report['top1'] * 100:.1f}%, ECE "
              f"{report['ece_before']:.3f} -> {report['ece_after']:.3f}\n")  # fmt: skip
    _print_rejection(report, out)
    out.write(f"wrote {args.out}; use it with --calibration {args.out}\n")
    return 0


def _print_rejection(report: dict[str, Any], out: TextIO) -> None:
    for name, figures in report.get("rejection", {}).items():
        if isinstance(figures, dict):
            out.write(f"  reject auto, {name} cut {figures['threshold']:.3f}: AUROC {figures['auroc']:.3f}, in-set "
                      f"kept and correct {figures['in_set_kept_correct'] * 100:.1f}%, out-of-set rejected "
                      f"{figures['out_of_set_rejected'] * 100:.1f}%\n")  # fmt: skip


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from ..finetune.run import evaluate_methods, format_comparison

    if args.multi_label:
        return _multilabel(args, out, fit=False)

    reranker = _eval_reranker(args)
    outside = _out_of_set(args)
    data, encoder, labels, store, templates = _setup(args)
    try:
        report = evaluate_methods(
            data,
            encoder,
            methods=list(dict.fromkeys(args.method)),
            labels=labels,
            templates=templates,
            shots=args.shots,
            seed=args.seed,
            store=store,
            lora=_lora_settings(args),
            out=args.out,
            progress=not args.quiet and sys.stderr.isatty(),
            say=_say(args),
            reranker=reranker,
            out_of_set=outside,
        )
    finally:
        if store is not None:
            store.close()
    if args.json:
        json.dump(report, out, indent=1, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(
            f"{report['dataset']}: {report['test_images']} test images ({report['test_source']}), "
            f"{report['shots']} shots per class, model {report['model']}, precision {encoder.precision}\n"
        )
        out.write(format_comparison(report) + "\n")
        calibrated = report["methods"].get("zeroshot", {}).get("calibration")
        if calibrated:
            out.write(f"zeroshot calibrated (temperature {calibrated['temperature']:.3f}, fitted on "
                      f"{calibrated['fit_images']} images held apart): ECE {calibrated['ece_before']:.3f} -> "
                      f"{calibrated['ece_after']:.3f}\n")  # fmt: skip
            _print_rejection(calibrated, out)
        if args.out:
            out.write(f"report: {args.out}\n")
    if report["skipped"]:
        sys.stderr.write(f"clipzero: {len(report['skipped'])} unreadable images left out (listed in the report)\n")
    return 0


def _eval_reranker(args: argparse.Namespace) -> Any:
    if "zeroshot+rerank" not in args.method:
        return None
    from ..factory import resolve_templates

    args.rerank = True
    return options.reranker(args, resolve_templates(args.templates))


def cmd_finetune(args: argparse.Namespace, out: TextIO) -> int:
    from ..finetune.run import class_labels, embed_examples, fit_cache, fit_lora, fit_probe, shots_for_training

    say = _say(args)
    data, encoder, labels, store, templates = _setup(args)
    classes = class_labels(data, labels)
    train, select = shots_for_training(data, args.shots, args.seed)
    say(f"{data.summary()}; training on {len(train)} images, choosing settings on {len(select)}")
    try:
        if args.finetune_command == "lora":
            _, _, record = fit_lora(
                encoder.spec,
                train,
                classes,
                select=select,
                templates=templates,
                settings=_lora_settings(args),
                progress=not args.quiet and sys.stderr.isatty(),
                out=args.out,
            )
            summary = {"selection_accuracy": record["select_accuracy"], "seconds": record["seconds"]}
            use = f"--adapter {args.out}"
        else:
            train_set = embed_examples(encoder, train, store=store)
            select_set = embed_examples(encoder, select, store=store) if select else None
            if args.finetune_command == "probe":
                head = fit_probe(encoder, train_set, classes, select=select_set, templates=templates)
                head.save(args.out)
                summary = head.info
            else:
                adapter = fit_cache(encoder, train_set, classes, select=select_set, templates=templates)
                adapter.save(args.out)
                summary = {**adapter.info, "alpha": adapter.alpha, "beta": adapter.beta}
            use = f"--head {args.out}"
    finally:
        if store is not None:
            store.close()
    json.dump({"out": str(args.out), "model": encoder.id, "precision": encoder.precision, "classes": len(classes),
               **summary}, out, indent=1)  # fmt: skip
    out.write("\n")
    say(f"wrote {args.out}; use it with `clipzero classify IMAGE... --model {encoder.spec} {use}`")
    return 0


def _usage(message: str) -> Exception:
    from ..errors import ConfigError

    return ConfigError(message)


COMMANDS = {"eval": cmd_eval, "finetune": cmd_finetune, "calibrate": cmd_calibrate}
