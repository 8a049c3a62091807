"""Adaptation end to end: embed a labelled set, fit a probe, a cache adapter or LoRA, and evaluate honestly.

:func:`evaluate_methods` is ``clipzero eval``: few-shot training images, a disjoint selection set for
hyperparameters, and a test set that no method ever trains on; one report with top-1, top-5, per-class recall,
expected calibration error and a confusion matrix per method, and a comparison table.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoder import Encoder
from ..errors import DatasetError, LabelError
from ..zeroshot import ZeroShotClassifier
from .cache_adapter import CacheAdapter, fit_cache_adapter
from .data import Example, LabeledSet, evaluation_splits, few_shot
from .linear_probe import LinearHead, train_linear_probe
from .lora import LoraSettings
from .metrics import evaluate_probabilities, save_confusion_png, softmax

__all__ = ["METHODS", "EmbeddedSet", "embed_examples", "evaluate_methods", "fit_cache", "fit_lora", "fit_probe"]

METHODS = ("zeroshot", "probe", "cache", "lora", "zeroshot+rerank")
log = logging.getLogger("clipzero.finetune")


@dataclass
class EmbeddedSet:
    """Embeddings of labelled images; unreadable images are left out and listed in ``skipped``."""

    vectors: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def embed_examples(
    encoder: Encoder, examples: Sequence[Example], *, store: Any = None, batch_size: int = 64
) -> EmbeddedSet:
    """Embed labelled images (content the store holds is not encoded again; new content is added to it)."""
    from ..pipeline import embed

    label_of = {e.path: e.label for e in examples}
    vectors, labels, paths, skipped = [], [], [], []
    lookup = store.vector_of if store is not None else None
    for batch in embed([e.path for e in examples], encoder, lookup=lookup, batch_size=batch_size):
        if store is not None:
            store.keep(batch)
        for item in batch:
            if item.vector is None:
                skipped.append((item.name, item.error or "unreadable"))
                continue
            vectors.append(item.vector)
            labels.append(label_of[item.name])
            paths.append(item.name)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    dim = encoder.embed_dim
    stacked = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    return EmbeddedSet(stacked, np.asarray(labels, np.int64), paths, skipped)


def class_labels(data: LabeledSet, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return list(data.classes)
    if len(labels) != len(data.classes):
        raise LabelError(
            f"{len(labels)} labels given for the {len(data.classes)} classes of {data.name!r} (in folder order: "
            f"{', '.join(data.folder_names[:8])}{'...' if len(data.classes) > 8 else ''})"
        )
    return list(labels)


def fit_probe(
    encoder: Encoder,
    shots: EmbeddedSet,
    classes: list[str],
    *,
    select: EmbeddedSet | None,
    templates: Any = "ensemble-en",
    init_zero_shot: bool = True,
) -> LinearHead:
    """A linear head on the shots, its penalty chosen on ``select`` (else on half the shots)."""
    init = None
    if init_zero_shot:
        zero_shot = ZeroShotClassifier(encoder, classes, templates=templates)
        init = zero_shot.weights * encoder.logit_scale
    return train_linear_probe(
        shots.vectors,
        shots.labels,
        classes,
        model_id=encoder.id,
        select_x=select.vectors if select is not None else None,
        select_y=select.labels if select is not None else None,
        init=init,
    )


def fit_cache(
    encoder: Encoder,
    shots: EmbeddedSet,
    classes: list[str],
    *,
    select: EmbeddedSet | None,
    templates: Any = "ensemble-en",
) -> CacheAdapter:
    """A cache adapter over the shots, alpha and beta chosen on ``select`` (else leave-one-out)."""
    zero_shot = ZeroShotClassifier(encoder, classes, templates=templates)
    return fit_cache_adapter(
        shots.vectors,
        shots.labels,
        zero_shot.weights,
        classes,
        logit_scale=encoder.logit_scale,
        model_id=encoder.id,
        select_x=select.vectors if select is not None else None,
        select_y=select.labels if select is not None else None,
    )


def _pixels(encoder: Encoder, examples: Sequence[Example]) -> tuple[Any, list[int], list[tuple[str, str]]]:
    """Preprocessed images for LoRA training, skipping unreadable ones."""
    import torch

    from ..errors import ImageError

    tensors, labels, skipped = [], [], []
    for example in examples:
        try:
            tensors.append(encoder.preprocess_images([example.path])[0])
            labels.append(example.label)
        except ImageError as exc:
            skipped.append((example.path, exc.reason))
    if not tensors:
        raise DatasetError("no readable training images")
    return torch.stack(tensors), labels, skipped


def fit_lora(
    spec: str,
    shots: Sequence[Example],
    classes: list[str],
    *,
    select: Sequence[Example] | None,
    templates: Any = "ensemble-en",
    settings: LoraSettings | None = None,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
) -> tuple[Any, Encoder, dict[str, Any]]:
    """Train LoRA on the shots, keeping the state that scores best on ``select``; save it to ``out`` if given.

    Returns:
        (the trained peft model, the fp32 base encoder it wraps, the training record).
    """
    from ..models import load_model
    from .lora import save_adapter, train_lora

    settings = settings or LoraSettings()
    base = load_model(spec, device="cpu", precision="fp32")
    base_id = base.id
    zero_shot = ZeroShotClassifier(base, classes, templates=templates)
    pixels, labels, _ = _pixels(base, shots)
    select_pair = None
    if select:
        select_pixels, select_labels, _ = _pixels(base, select)
        select_pair = (select_pixels, select_labels)
    model, record = train_lora(
        base, pixels, labels, zero_shot.weights, settings, select=select_pair, progress=progress, log=log.info
    )
    if out is not None:
        template_name = getattr(zero_shot.templates, "name", str(templates))
        save_adapter(
            model, out, base_id=base_id, base_spec=base.spec, classes=classes, templates=template_name, record=record
        )
    return model, base, record


def evaluate_methods(
    data: LabeledSet,
    encoder: Encoder,
    *,
    methods: Sequence[str] = ("zeroshot",),
    labels: Sequence[str] | None = None,
    templates: Any = "ensemble-en",
    shots: int = 16,
    seed: int = 0,
    store: Any = None,
    lora: LoraSettings | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    reranker: Any = None,
    out_of_set: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate zero-shot and adapted classifiers on one labelled set.

    Args:
        data: the labelled set (:func:`clipzero.finetune.data.load_labeled`).
        encoder: the model used for every method (LoRA trains an fp32 copy, then evaluates at this precision).
        methods: any of ``zeroshot``, ``probe``, ``cache``, ``lora``.
        labels: label text per class, in class order (default: the dataset's readable class names).
        templates: the template set for zero-shot and for the classifiers built on it.
        shots: training images per class.
        seed: for sampling the shots.
        store: an EmbeddingStore of the encoder's model, so images are embedded once across runs.
        lora: LoRA settings.
        out: the report file (JSON); confusion-matrix PNGs are written beside it.
        reranker: a :class:`~clipzero.rerank.Reranker` for ``zeroshot+rerank`` (zero-shot with the same
            templates is then reported too, as the baseline).
        out_of_set: images that fit none of the classes: zero-shot's rejection figures are reported.

    Returns:
        The report.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LabelError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if "zeroshot+rerank" in methods:
        if reranker is None:
            raise LabelError("method zeroshot+rerank needs an LLM: give --llm-url and --llm-model")
        methods = ["zeroshot", *[m for m in methods if m != "zeroshot"]]
    say = say or (lambda _: None)
    classes = class_labels(data, labels)
    splits = evaluation_splits(data, shots, seed)
    say(
        f"{data.summary()}; {len(splits.shots)} training images ({shots} per class), {len(splits.select)} to "
        f"choose settings on, {len(splits.test)} test images ({splits.test_source})"
    )
    started = time.perf_counter()
    train = embed_examples(encoder, splits.shots, store=store)
    select = embed_examples(encoder, splits.select, store=store) if splits.select else None
    test = embed_examples(encoder, splits.test, store=store)
    say(
        f"embedded {len(train.paths) + len(test.paths) + (len(select.paths) if select else 0)} images in "
        f"{time.perf_counter() - started:.1f} s"
    )
    if not len(test.paths):
        raise DatasetError(f"dataset {data.name!r}: none of the test images could be read")
    results: dict[str, dict[str, Any]] = {}
    for method in methods:
        started = time.perf_counter()
        info: dict[str, Any] = {}
        if method == "zeroshot":
            logits = ZeroShotClassifier(encoder, classes, templates=templates).logits(test.vectors)[0]
        elif method == "probe":
            head = fit_probe(encoder, train, classes, select=select, templates=templates)
            logits, info = head.logits(test.vectors), head.info
        elif method == "zeroshot+rerank":
            logits, info = _reranked_logits(encoder, test, classes, templates, reranker)
        elif method == "cache":
            adapter = fit_cache(encoder, train, classes, select=select, templates=templates)
            logits, info = adapter.logits(test.vectors), adapter.info
        else:
            logits, info = _lora_logits(encoder, splits.shots, splits.select, test, classes, templates, lora, progress)
        metrics = evaluate_probabilities(softmax(logits), test.labels, classes)
        metrics["seconds"] = round(time.perf_counter() - started, 2)
        metrics["fit"] = info
        results[method] = metrics
        say(
            f"{method:<9} top-1 {metrics['top1'] * 100:5.1f}%  top-5 {metrics['top5'] * 100:5.1f}%  "
            f"ECE {metrics['ece']:.3f}  ({metrics['seconds']:.1f} s)"
        )
    if "zeroshot" in methods:  # temperature and rejection cut fitted on images held apart from the test split
        from ..calibration import fit_and_measure

        held = EmbeddedSet(np.concatenate([train.vectors, *([select.vectors] if select else [])]),
                           np.concatenate([train.labels, *([select.labels] if select else [])]),
                           train.paths + (select.paths if select else []))  # fmt: skip
        outside = None
        if out_of_set:
            outside = embed_examples(encoder, [Example(p, -1) for p in out_of_set], store=store).vectors
        classifier = ZeroShotClassifier(encoder, classes, templates=templates)
        results["zeroshot"]["calibration"] = fit_and_measure(classifier, held, test, outside)[2]
    report: dict[str, Any] = {
        "dataset": data.name,
        "model": encoder.id,
        "precision": encoder.precision,
        "templates": getattr(templates, "name", str(templates)),
        "classes": classes,
        "shots": shots,
        "seed": seed,
        "test_source": splits.test_source,
        "train_images": len(train.paths),
        "select_images": len(select.paths) if select else 0,
        "test_images": len(test.paths),
        "skipped": [
            {"path": p, "reason": r} for p, r in train.skipped + test.skipped + (select.skipped if select else [])
        ],
        "methods": results,
        "comparison": comparison_rows(results),
    }
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        for method, metrics in results.items():
            png = target.with_name(f"{target.stem}.confusion-{method}.png")
            save_confusion_png(np.asarray(metrics["confusion"]), classes, png, f"{data.name}: {method}")
            metrics["confusion_png"] = png.name
        target.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    return report


def _lora_logits(
    encoder: Encoder,
    shots: list[Example],
    select: list[Example],
    test: EmbeddedSet,
    classes: list[str],
    templates: Any,
    settings: LoraSettings | None,
    progress: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    from ..encoder import apply_precision

    model, base, record = fit_lora(
        encoder.spec, shots, classes, select=select, templates=templates, settings=settings, progress=progress
    )
    merged = apply_precision(model.merge_and_unload().eval(), encoder.precision, encoder.device)
    adapted = Encoder(
        merged,
        base.preprocess,
        base.tokenizer,
        id=f"{base.id}+lora",
        arch=base.arch,
        precision=encoder.precision,
        device=encoder.device,
    )
    vectors = embed_examples(adapted, [Example(p, int(y)) for p, y in zip(test.paths, test.labels)]).vectors
    text = ZeroShotClassifier(encoder, classes, templates=templates).weights
    return vectors.astype(np.float64) @ text.T.astype(np.float64) * encoder.logit_scale, record


def _reranked_logits(
    encoder: Encoder, test: EmbeddedSet, classes: list[str], templates: Any, reranker: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """Zero-shot logits with each image's top-k reordered as the LLM ranked them (CLIP's values permuted, so
    confidence stays CLIP's); a label the LLM rejects ("none") keeps CLIP's order."""
    classifier = ZeroShotClassifier(encoder, classes, templates=templates)
    logits = classifier.logits(test.vectors)[0].copy()
    predictions = classifier.predict_embeddings(test.vectors, test.paths, top_k=reranker.top_k)
    results = reranker.rerank_many(predictions)
    index = {label: i for i, label in enumerate(classes)}
    used = changed = 0
    fallbacks: dict[str, int] = {}
    for row, result in enumerate(results):
        if not result.reranked:
            key = (result.fallback or "").split(":")[0]
            fallbacks[key] = fallbacks.get(key, 0) + 1
            continue
        used += 1
        if result.label is None:
            continue
        before = [index[p.label] for p in result.clip.predictions[: reranker.top_k]]
        after = [index[p.label] for p in result.predictions[: reranker.top_k]]
        logits[row, after] = np.sort(logits[row, before])[::-1]
        changed += int(after[0] != before[0])
    info = {
        "method": "zeroshot+rerank",
        "llm": reranker.client.model,
        "template": reranker.template.name,
        "candidates": reranker.top_k,
        "answers_used": used,
        "top1_changed": changed,
        "fallbacks": fallbacks,
    }
    return logits, info


def comparison_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method: top-1, top-5, ECE and the gain in top-1 points over zero-shot (when it ran)."""
    base = results.get("zeroshot", {}).get("top1")
    return [
        {
            "method": method,
            "top1": round(m["top1"], 6),
            "top5": round(m["top5"], 6),
            "ece": round(m["ece"], 4),
            "gain_top1_points": round((m["top1"] - base) * 100, 1) if base is not None else None,
        }
        for method, m in results.items()
    ]


def format_comparison(report: dict[str, Any]) -> str:
    lines = [f"{'method':<10} {'top-1':>7} {'top-5':>7} {'ECE':>6} {'vs zero-shot':>13}"]
    for row in report["comparison"]:
        gain = "" if row["gain_top1_points"] is None else f"{row['gain_top1_points']:+.1f} pts"
        lines.append(
            f"{row['method']:<10} {row['top1'] * 100:6.1f}% {row['top5'] * 100:6.1f}% {row['ece']:6.3f} {gain:>13}"
        )
    return "\n".join(lines)


def shots_for_training(data: LabeledSet, shots: int | None, seed: int) -> tuple[list[Example], list[Example]]:
    """Training and selection images for ``clipzero finetune``: ``shots`` per class of ``train`` (all of it when
    None), and the ``validation`` split (or, without one, up to ``shots`` more per class of ``train``)."""
    train = data.splits.get("train") or next(iter(data.splits.values()))
    chosen = few_shot(train, shots, seed) if shots else list(train)
    if "validation" in data.splits:
        return chosen, data.splits["validation"]
    taken = {e.path for e in chosen}
    rest = [e for e in train if e.path not in taken]
    return chosen, (few_shot(rest, shots or 16, seed + 1) if rest else [])
