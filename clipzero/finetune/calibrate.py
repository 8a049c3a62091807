"""``clipzero calibrate``: fit a temperature (and a rejection cut) on a labelled set, measured on its test split."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..calibration import Calibration, fit_and_measure
from ..errors import DatasetError
from ..zeroshot import ZeroShotClassifier
from .data import Example, LabeledSet, evaluation_splits
from .run import class_labels, embed_examples

__all__ = ["calibrate"]


def calibrate(
    data: LabeledSet,
    encoder: Any,
    *,
    labels: Sequence[str] | None = None,
    templates: Any = "ensemble-en",
    shots: int = 16,
    seed: int = 0,
    out_of_set: Sequence[str] = (),
    store: Any = None,
    say: Callable[[str], None] | None = None,
) -> tuple[Calibration, dict[str, Any]]:
    """Fit a temperature (and, with out-of-set images, a rejection cut) on a labelled set, and measure it.

    The fit uses up to ``2 x shots`` images per class (:func:`~clipzero.finetune.data.evaluation_splits`' training
    and selection images, plus half of the out-of-set images); the figures are measured on the test split (and the
    other half), which the fit never sees.

    Args:
        data: a :class:`~clipzero.finetune.data.LabeledSet`.
        encoder: the model.
        labels: label text per class (default: the dataset's readable class names).
        templates: the template set.
        shots: images per class to fit on (twice this, counting the selection images).
        seed: for sampling them.
        out_of_set: image files that fit none of the labels.
        store: an EmbeddingStore of the model (images embedded once).

    Returns:
        (the calibration, a report with ECE and top-1 before and after, and the rejection figures).

    Raises:
        DatasetError: no readable images to fit on or to test on.
    """
    say = say or (lambda _: None)
    classes = class_labels(data, labels)
    splits = evaluation_splits(data, shots, seed)
    fit_set = embed_examples(encoder, splits.shots + splits.select, store=store)
    test_set = embed_examples(encoder, splits.test, store=store)
    if not len(fit_set.paths) or not len(test_set.paths):
        raise DatasetError(f"dataset {data.name!r}: no readable images to fit a calibration on, or to test it on")
    classifier = ZeroShotClassifier(encoder, classes, templates=templates)
    outside = None
    if out_of_set:
        outside = embed_examples(encoder, [Example(os.fspath(p), -1) for p in out_of_set], store=store).vectors
    temperature, rule, figures = fit_and_measure(classifier, fit_set, test_set, outside)
    report: dict[str, Any] = {"dataset": data.name, "model": encoder.id, "classes": len(classes),
                              "templates": classifier.templates.name, **figures}  # fmt: skip
    say(f"temperature {temperature:.3f} from {len(fit_set.paths)} images; ECE on {len(test_set.paths)} test images "
        f"{report['ece_before']:.3f} -> {report['ece_after']:.3f}")  # fmt: skip
    if rule is not None:
        reference = report["rejection"]["reference"]["threshold"]
        say(f"rejection cut {rule.threshold:.3f} (the reference task's: {reference})")
    fitted_on = {key: report[key] for key in ("dataset", "classes", "templates", "fit_images")}
    return Calibration(encoder.id, temperature, rule, fitted_on | {"report": report}), report
