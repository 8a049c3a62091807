"""Zero-shot classification: label embeddings from prompt templates, and predictions over them.

Each label's prompts (its templates filled in) are embedded, L2-normalised, averaged and renormalised into one
class vector. An image's cosine similarity to each class vector, times the model's learned ``logit_scale`` (plus
``logit_bias`` for SigLIP-family models), gives logits; a softmax over the label set (a per-label sigmoid for
SigLIP) gives the probabilities reported as ``score``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import AdapterError, ClipzeroWarning, ConfigError, ImageError, LabelError
from .images import ImageSource
from .labelcache import LabelCache, default_label_cache, memory_label_cache
from .languages import choose_templates, warn_if_english_only
from .multilabel import check_views
from .predictions import LabelScore, Prediction
from .prompts import TemplateSet, load_templates, normalize_label
from .rejection import Rejection, RejectionRule, check_reject, reference_rule

if TYPE_CHECKING:
    from .calibration import Calibration
    from .encoder import Encoder
    from .pipeline import Embedded
    from .store import EmbeddingStore

__all__ = [
    "LabelScore",
    "Prediction",
    "ZeroShotClassifier",
    "clean_labels",
    "clear_label_cache",
    "predict_embedded",
    "read_labels",
]


def clear_label_cache() -> None:
    """Forget the label embeddings cached in this process."""
    memory_label_cache().clear()


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read labels from a text file: one per line; blank lines and lines starting with ``#`` are ignored.

    Raises:
        LabelError: the file cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise LabelError(f"labels file {path} not found") from exc
    except OSError as exc:
        raise LabelError(f"cannot read labels file {path}: {exc}") from exc
    # UTF-8 with or without its BOM; UTF-16 only with a BOM (Windows Notepad's "Unicode"): it says which it is.
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LabelError(f"labels file {path} is not UTF-8 (byte 0x{data[exc.start]:02x} at position {exc.start} "
                         "cannot be read): save it as UTF-8") from exc  # fmt: skip
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def clean_labels(labels: Iterable[str]) -> list[str]:
    """Validate labels: strip outer whitespace, merge duplicates (same text ignoring case) with a warning.

    Raises:
        LabelError: no labels, or a label that is not a non-empty string.
    """
    if isinstance(labels, str):
        raise LabelError("labels must be a list of strings, not one string")
    seen: dict[str, str] = {}
    out: list[str] = []
    for raw in labels:
        if not isinstance(raw, str) or not raw.strip():
            raise LabelError(f"every label must be a non-empty string, got {raw!r}")
        label = raw.strip()
        key = normalize_label(label)
        if key in seen:
            warnings.warn(f"duplicate label {label!r} merged with {seen[key]!r}", ClipzeroWarning, stacklevel=3)
            continue
        seen[key] = label
        out.append(label)
    if not out:
        raise LabelError("no labels given: pass at least one label")
    return out


class ZeroShotClassifier:
    """Classify images against free-text labels.

    Args:
        encoder: a loaded model (:func:`clipzero.load_model`).
        labels: the candidate labels, kept exactly as given in outputs.
        templates: a template set name, file, :class:`TemplateSet` or list of templates.
        batch_size: prompts per text forward pass.
        label_cache: the persistent label cache (True: the one under CLIPZERO_HOME; False: none).
        text_slot: a context manager held only while labels that no cache holds are encoded (a server passes a
            semaphore so that new label sets take turns, while cached ones never wait).
        calibration: a :class:`~clipzero.calibration.Calibration` of this model (``clipzero calibrate``): its
            temperature scales the probabilities, and its rejection cut replaces the reference one.

    Raises:
        LabelError: no labels, or an invalid one.
        TemplateError: the template set is unknown or malformed.

    Example:
        >>> clf = ZeroShotClassifier(load_model(), ["cat", "dog"], templates="ensemble-en")
        >>> clf.classify(["pet.jpg"])[0].label
        'cat'
    """

    calibration: Calibration | None = None  # trained heads (subclasses) keep their own scale

    def __init__(
        self,
        encoder: Encoder,
        labels: Iterable[str],
        templates: str | os.PathLike[str] | TemplateSet | Sequence[str] = "auto",
        *,
        batch_size: int = 256,
        label_cache: LabelCache | bool = True,
        text_slot: AbstractContextManager[Any] | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        if calibration is not None and calibration.model_id != encoder.id:
            raise AdapterError(f"the calibration was fitted for model {calibration.model_id!r}, not {encoder.id!r}")
        self.calibration = calibration
        self.encoder = encoder
        self._text_slot = text_slot
        self.labels = clean_labels(labels)
        # The auto set (the default) gives each Chinese label the Chinese templates; a chosen set holds for all.
        self.templates, self.label_templates, self.template_note = choose_templates(load_templates(templates),
                                                                                    self.labels)  # fmt: skip
        warn_if_english_only(encoder, self.labels)
        if label_cache is True:
            label_cache = default_label_cache()
        self.label_cache = label_cache if isinstance(label_cache, LabelCache) else None
        self.weights = self._class_embeddings(batch_size)  # (n_labels, dim)

    @property
    def uses_sigmoid(self) -> bool:
        """True for SigLIP-family models, whose labels are scored independently."""
        return self.encoder.logit_bias is not None

    def _class_embeddings(self, batch_size: int) -> np.ndarray:
        sets = {label: self.label_templates.get(label, self.templates) for label in self.labels}
        key_of = {label: (self.encoder.id, sets[label].content_hash, normalize_label(label)) for label in self.labels}
        keys = list(key_of.values())
        # (model id, template-set content hash, normalised label) -> class vector (dim,), float32, unit length.
        vectors = memory_label_cache().get_many(keys)
        if self.label_cache is not None:  # the persistent cache fills what this process has not seen yet
            from_disk = self.label_cache.get_many(k for k in keys if k not in vectors)
            memory_label_cache().put_many(from_disk)
            vectors.update(from_disk)
        missing = [label for label in self.labels if key_of[label] not in vectors]
        if missing:
            prompts_per_label = [sets[label].prompts_for(label) for label in missing]
            self._warn_long(missing, prompts_per_label)
            flat = [prompt for prompts in prompts_per_label for prompt in prompts]
            with self._text_slot or nullcontext():
                embedded = self.encoder.encode_texts(flat, batch_size=batch_size)  # (n_prompts, dim)
            start = 0
            for label, prompts in zip(missing, prompts_per_label):
                mean = embedded[start : start + len(prompts)].mean(axis=0)
                start += len(prompts)
                vectors[key_of[label]] = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
            new = {key_of[m]: vectors[key_of[m]] for m in missing}
            memory_label_cache().put_many(new)
            if self.label_cache is not None:
                self.label_cache.put_many(new)
        return np.stack([vectors[key] for key in keys])

    def _warn_long(self, labels: list[str], prompts_per_label: list[list[str]]) -> None:
        limit = self.encoder.context_length
        for label, prompts in zip(labels, prompts_per_label):
            longest = max(self.encoder.count_tokens(p) for p in prompts)
            if longest > limit:
                warnings.warn(
                    f"label {label[:60]!r} makes prompts of {longest} tokens, over the model's text context of "
                    f"{limit}: they are truncated",
                    ClipzeroWarning,
                    stacklevel=4,
                )

    def logits(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (float64) and cosine similarities for L2-normalised image embeddings, each (n, n_labels).

        Adapted classifiers (a trained linear head, a few-shot cache) override this one method.
        """
        similarities = np.asarray(embeddings, dtype=np.float32) @ self.weights.T  # (n, n_labels)
        return similarities.astype(np.float64) * self.encoder.logit_scale, similarities

    def scores(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and cosine similarities for image embeddings.

        Args:
            embeddings: float32 (n, dim), L2-normalised.

        Returns:
            (probabilities, similarities), each (n, n_labels).
        """
        logits, similarities = self.logits(embeddings)
        if self.calibration is not None:
            logits = logits / self.calibration.temperature
        if self.uses_sigmoid:
            probabilities = 1.0 / (1.0 + np.exp(-(logits + (self.encoder.logit_bias or 0.0))))
        else:
            logits -= logits.max(axis=1, keepdims=True)
            exp = np.exp(logits)
            probabilities = exp / exp.sum(axis=1, keepdims=True)
        return probabilities, similarities

    def rejection_rule(self, reject: str | None = "auto", min_similarity: float | None = None) -> RejectionRule:
        """The "none of these" cut: ``min_similarity`` when given, else the ``auto`` rule of this model and template
        set (see :mod:`clipzero.rejection`; computed once, then cached on disk).

        Raises:
            ConfigError: ``auto`` asked of a trained head (its scores are not cosine similarities to labels).
        """
        check_reject(reject, min_similarity)
        if min_similarity is not None:
            return RejectionRule(float(min_similarity), source="min-similarity")
        if self.calibration is not None and self.calibration.rule is not None:
            return self.calibration.rule
        if self.templates is None:
            raise ConfigError("reject auto works with zero-shot labels, not with a trained head: use --min-similarity")
        return reference_rule(self.encoder, self.templates.content_hash, self._reference_weights,
                              self.templates.language_or_guess)  # fmt: skip

    def _reference_weights(self, labels: list[str]) -> np.ndarray:
        return ZeroShotClassifier(self.encoder, labels, self.templates, label_cache=self.label_cache or False,
                                  text_slot=self._text_slot).weights  # fmt: skip

    def predict_embeddings(
        self,
        embeddings: np.ndarray,
        names: Sequence[str],
        *,
        top_k: int = 5,
        threshold: float | None = None,
        reject: str | None = None,
        min_similarity: float | None = None,
    ) -> list[Prediction]:
        """Predictions for already-embedded images (one name per row).

        Args:
            embeddings: float32 (n, dim), L2-normalised.
            names: one per row, for the results.
            top_k: labels kept per image.
            threshold: below this top probability the image gets no label.
            reject: ``auto``: no label when the image fits none of the labels (its best label's similarity is under
                the model's calibrated cut); see :mod:`clipzero.rejection`. With a single label and neither
                ``reject`` nor ``min_similarity``, ``auto`` is used: the answer is yes or no, never a certain 1.0.
            min_similarity: the same with a cosine similarity cut given by hand.
        """
        if top_k < 1:
            raise LabelError(f"top_k must be at least 1, got {top_k}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise LabelError(f"threshold must be a probability between 0 and 1, got {threshold}")
        if len(self.labels) == 1 and reject is None and min_similarity is None:
            reject = "auto"  # a softmax over one label is always 1: the calibrated cut says yes or no instead
        rule = self.rejection_rule(reject, min_similarity) if reject or min_similarity is not None else None
        probabilities, similarities = self.scores(embeddings)
        k = min(top_k, len(self.labels))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        results = []
        for row, name in enumerate(names):
            top = [
                LabelScore(self.labels[j], float(probabilities[row, j]), float(similarities[row, j]))
                for j in order[row]
            ]
            chosen = top[0].label if threshold is None or top[0].score >= threshold else None
            rejection = None
            if rule is not None:
                best = float(similarities[row].max())
                rejected = best < rule.threshold
                rejection = Rejection(round(rule.score(best), 4), best, rule.threshold, rejected, top[0].label,
                                      top[0].score, rule.source)  # fmt: skip
                chosen = None if rejected else chosen
            results.append(Prediction(image=name, label=chosen, predictions=top, rejection=rejection))
        return results

    def predict_multi(self, embeddings: np.ndarray, names: Sequence[str], *, top_k: int = 5,
                      min_similarity: float | None = None) -> list[Prediction]:  # fmt: skip
        """Multi-label predictions (every label that applies, see :mod:`clipzero.multilabel`) for images embedded
        as views, (n, views, dim), or as single vectors, (n, dim)."""
        from .multilabel import predict_views

        views = 1 if np.ndim(embeddings) == 2 else int(np.shape(embeddings)[1])
        rule = self.multi_label_rule(views)
        return predict_views(self, embeddings, names, rule, top_k=top_k, min_similarity=min_similarity)

    def multi_label_rule(self, views: int) -> Any:
        """The multi-label decision rule of this model and template set at ``views`` views: a calibration's
        (``calibrate --multi-label``, fitted at those views), else the reference task's, computed once and kept on
        disk (see :mod:`clipzero.multilabel`)."""
        from .multilabel import reference_rule

        if self.templates is None:
            raise ConfigError("multi-label tagging works with zero-shot labels, not with a trained head")
        fitted = self.calibration.multi_label if self.calibration is not None else None
        if fitted is not None and fitted.views == views:
            return fitted
        return reference_rule(self.encoder, self.templates.content_hash, self._reference_weights, views,
                              self.templates.language_or_guess)  # fmt: skip

    def classify(
        self,
        images: Sequence[ImageSource],
        *,
        top_k: int = 5,
        threshold: float | None = None,
        batch_size: int = 32,
        on_error: Literal["raise", "report"] = "raise",
        store: EmbeddingStore | None = None,
        reject: str | None = None,
        min_similarity: float | None = None,
        multi_label: bool = False,
        views: int | None = None,
    ) -> list[Prediction]:
        """Classify images given as paths, bytes or PIL images.

        Args:
            images: the images, classified in batches.
            top_k: how many labels to return per image.
            threshold: below this top probability the image gets no label (``label`` is None).
            batch_size: images per forward pass.
            on_error: ``raise`` an ImageError for an unreadable image, or ``report`` it as a Prediction whose
                ``error`` says why, while the other images are classified.
            store: an EmbeddingStore of the same model: images it holds (unchanged files) are not encoded again.
            reject, min_similarity: "none of these" for images that fit no label (see :meth:`predict_embeddings`).
            multi_label: every label that applies (``tags``), scored on ``views`` views of each image (default
                :data:`clipzero.multilabel.DEFAULT_VIEWS`); ``min_similarity`` is then a raw cut on the best view.

        Returns:
            One Prediction per image, in input order.
        """
        from .pipeline import embed

        if store is not None and store.model_id != self.encoder.id:
            from .errors import StoreError

            raise StoreError(f"store {store.path} holds embeddings of {store.model_id!r}, not {self.encoder.id!r}")
        results: list[Prediction] = []
        lookup = store.vector_of if store is not None else None
        count = (check_views(views) if multi_label else 1)
        for batch in embed(images, self.encoder, lookup=lookup, batch_size=batch_size, views=count):
            bad = next((item for item in batch if item.vector is None), None)
            if on_error == "raise" and bad is not None:
                raise ImageError(bad.name, bad.error or "could not be read")
            results.extend(predict_embedded(self, batch, top_k=top_k, threshold=threshold, reject=reject,
                                            min_similarity=min_similarity, multi_label=multi_label))  # fmt: skip
        return results


def predict_embedded(
    classifier: Any, items: Sequence[Embedded], *, top_k: int = 5, threshold: float | None = None,
    reject: str | None = None, min_similarity: float | None = None, multi_label: bool = False,
) -> list[Prediction]:  # fmt: skip
    """One Prediction per pipeline item, in order: the classifier's for those with a vector, the reason for the
    others (``error`` set). ``classifier`` is anything with ``predict_embeddings`` (zero-shot or a trained head);
    ``multi_label`` asks its ``predict_multi`` (items embedded as views)."""
    good = [item for item in items if item.vector is not None]
    found: Iterator[Prediction] = iter(())
    if good and multi_label:
        vectors = np.stack([item.vector for item in good])  # type: ignore[misc]  # (n, views, dim) or (n, dim)
        found = iter(classifier.predict_multi(vectors, [i.name for i in good], top_k=top_k,
                                              min_similarity=min_similarity))  # fmt: skip
    elif good:
        vectors = np.stack([item.vector for item in good])  # type: ignore[misc]  # (n, dim)
        found = iter(classifier.predict_embeddings(vectors, [i.name for i in good], top_k=top_k, threshold=threshold,
                                                   reject=reject, min_similarity=min_similarity))  # fmt: skip
    return [
        next(found) if item.vector is not None else Prediction(image=item.name, label=None, error=item.error)
        for item in items
    ]
