"""The agent tools' work: one loaded model, the stores, the allowed folders, and one method per tool.

A :class:`Toolbox` is what the MCP server (``clipzero mcp``) calls; it is plain Python, so any other agent
framework can call it too. It trusts nothing in the arguments: paths must lie inside the operator's roots
(:func:`clipzero.access.inside_roots`), template sets are names or inline templates (never files), and every
count and size is checked against :class:`~clipzero.tools.specs.ToolLimits` before work starts.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..access import check_labels, inside_roots
from ..errors import ClientPathRefused, ConfigError, ImageError, LabelError, StoreError
from .specs import ToolLimits, tool_specs

__all__ = ["Progress", "Toolbox"]

#: Reports progress of a long call: (done, total, message).
Progress = Callable[[int, int, str], None]

_DATA_URL = "data:image/"


class Toolbox:
    """The tools, sharing one model (loaded here, once) and the label caches (on disk: shared with the CLI).

    Args:
        model, device, precision, adapter: the model, decided by the factory (flag > env > config > default); with
            stores and no model, the stores' model.
        templates: the default template set.
        stores: embedding store folders for ``search_images`` (named by folder name; one model for all).
        roots: the folders whose files the tools may read and write; none means data URLs only.
        limits: per-call bounds.
        llm_url, llm_model: the LLM for ``describe_labels`` (default: the configured one, if any).
        calibration: a calibration file of the model (``clipzero calibrate``), applied to every classification.

    Raises:
        ConfigError: a root that is not a folder, a store that does not exist, stores of different models.
        ModelNotFoundError, ModelUnavailableError, ModelLoadError: the model cannot be loaded.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        adapter: str | None = None,
        templates: str | None = None,
        stores: Sequence[str | os.PathLike[str]] = (),
        roots: Sequence[str | os.PathLike[str]] = (),
        limits: ToolLimits | None = None,
        llm_url: str | None = None,
        llm_model: str | None = None,
        calibration: str | os.PathLike[str] | None = None,
    ) -> None:
        from ..factory import check_model, open_calibration, open_encoder, resolve_model, resolve_templates, store_model
        from ..labelsets import ClassifierCache
        from ..store import EmbeddingStore

        for root in roots:
            if not Path(root).is_dir():
                raise ConfigError(f"--root {root} is not a folder")
        self.roots = [Path(os.path.realpath(root)) for root in roots]
        self.limits = limits or ToolLimits()
        self.default_templates = resolve_templates(templates)
        self.llm_url, self.llm_model = llm_url, llm_model
        for path in stores:
            if store_model(path) is None:
                raise ConfigError(f"no embedding store at {path} (make one with `clipzero index add`)")
        choice = check_model(resolve_model(model, device=device, precision=precision, adapter=adapter,
                                           store=stores[0] if stores else None))  # fmt: skip
        self.encoder: Any = open_encoder(choice)
        self.calibration = open_calibration(calibration, self.encoder.id)
        self.stores: dict[str, Any] = {}
        for path in stores:
            name = Path(path).resolve().name
            name = name if name not in self.stores else f"{name}-{len(self.stores) + 1}"
            try:
                self.stores[name] = EmbeddingStore(path, self.encoder)
            except StoreError as exc:
                raise ConfigError(f"{exc} (all --store folders must be of this server's model)") from exc
        self._text_slot = threading.Semaphore(1)  # new label sets (and texts) are encoded one at a time
        self._classifiers = ClassifierCache(self.encoder, self.default_templates, size=32, text_slot=self._text_slot,
                                            calibration=self.calibration)  # fmt: skip
        self._lock = threading.Lock()
        self._tagging: set[Path] = set()  # result files a tag_folder call is writing
        self._tools: dict[str, Callable[..., dict[str, Any]]] = {
            "classify_images": self.classify_images,
            "search_images": self.search_images,
            "tag_folder": self.tag_folder,
            "embed": self.embed,
            "describe_labels": self.describe_labels,
            "list_models": self.list_models,
            "list_template_sets": self.list_template_sets,
        }
        self._specs = {spec.name: spec for spec in tool_specs(self.limits)}

    # -- dispatch -------------------------------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | None, progress: Progress | None = None) -> dict[str, Any]:
        """Run tool ``name`` with ``arguments`` (a JSON object, as a model sends it).

        Raises:
            ClipzeroError: an unknown tool or argument, a refused path, a bound exceeded, unreadable input.
        """
        spec = self._specs.get(name)
        if spec is None:
            raise ConfigError(f"unknown tool {name!r}: the tools are {', '.join(self._specs)}")
        arguments = dict(arguments or {})
        unknown = sorted(set(arguments) - set(spec.input_schema["properties"]))
        if unknown:
            raise LabelError(f"{name}: unknown argument(s) {', '.join(unknown)}")
        missing = [key for key in spec.input_schema["required"] if key not in arguments]
        if missing:
            raise LabelError(f"{name}: missing argument(s) {', '.join(missing)}")
        if name == "tag_folder":
            arguments["progress"] = progress
        return self._tools[name](**arguments)

    # -- helpers --------------------------------------------------------------------------------------------------
    def _labels(self, labels: Any) -> list[str]:
        from ..zeroshot import clean_labels

        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise LabelError("labels must be a non-empty list of strings")
        check_labels(labels, max_labels=self.limits.max_labels, max_chars=self.limits.max_label_chars)
        return clean_labels(labels)

    def _classifier(self, labels: list[str], templates: Any) -> Any:
        return self._classifiers.get(labels, templates)

    def _top_k(self, top_k: Any) -> int:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= self.limits.max_top_k:
            raise LabelError(f"top_k must be a whole number from 1 to {self.limits.max_top_k}, got {top_k!r}")
        return top_k

    def _image(self, ref: Any, where: str) -> tuple[str, bytes | Path]:
        """(the name results use, the bytes or the checked path) of one image argument."""
        if not isinstance(ref, str) or not ref:
            raise LabelError(f"{where} must be a file path or a data URL")
        limit = self.limits.max_image_bytes
        if ref.startswith("data:"):
            head, comma, data = ref.partition(",")
            if not head.startswith(_DATA_URL) or not head.endswith(";base64") or not comma:
                raise ImageError(where, "a data URL must look like data:image/png;base64,<data>")
            if len(data) * 3 // 4 > limit:
                raise ImageError(where, f"over this server's limit of {limit:,} bytes per image")
            try:
                return where, base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ImageError(where, "the data URL's data is not valid base64") from exc
        path = inside_roots(self._in_root(ref), self.roots)
        if path.stat().st_size > limit:
            raise ImageError(ref, f"over this server's limit of {limit:,} bytes per image")
        return ref, path

    def _in_root(self, ref: str) -> str:
        """A relative path is read inside the first root (never the server's working folder)."""
        return ref if os.path.isabs(ref) or not self.roots else os.path.join(self.roots[0], ref)

    def _images(self, refs: Any, *, allow_empty: bool = False) -> list[tuple[str, bytes | Path]]:
        self._check_refs(refs, allow_empty)
        return [self._image(ref, f"images[{i}]") for i, ref in enumerate(refs)]

    def _check_refs(self, refs: Any, allow_empty: bool = False) -> None:
        if not isinstance(refs, list) or (not refs and not allow_empty):
            raise LabelError("images must be a non-empty list of file paths or data URLs")
        if len(refs) > self.limits.max_images:
            raise LabelError(f"{len(refs)} images, over this server's limit of {self.limits.max_images} per call")

    def _embedded_in_place(self, refs: Any, views: int = 1) -> list[Any]:
        """Every image argument, in order: embedded, or with the reason it was refused or unreadable in its place
        (one bad path does not fail the others, as on ``POST /v1/classify``).

        Raises:
            ImageError: every image was refused before it was read (each named with its reason); images that were
                read and found unreadable are reported in place, as the other doors do.
        """
        from ..pipeline import Embedded

        self._check_refs(refs)
        checked: list[tuple[str, bytes | Path] | Embedded] = []
        for i, ref in enumerate(refs):
            try:
                checked.append(self._image(ref, f"images[{i}]"))
            except (ClientPathRefused, ImageError) as exc:
                name = ref if isinstance(ref, str) and not ref.startswith("data:") else f"images[{i}]"
                checked.append(Embedded(name[:300], error=exc.reason if isinstance(exc, ImageError) else str(exc)))
        if all(isinstance(c, Embedded) for c in checked):  # nothing to read at all: the call itself is wrong
            raise ImageError("no image could be used", "; ".join(f"{c.name}: {c.error}" for c in checked
                                                                 if isinstance(c, Embedded)))  # fmt: skip
        good = iter(self._embedded([c for c in checked if not isinstance(c, Embedded)], views))
        return [c if isinstance(c, Embedded) else next(good) for c in checked]

    def _embedded(self, images: list[tuple[str, bytes | Path]], views: int = 1) -> list[Any]:
        from ..pipeline import embed_all

        items = embed_all([source for _, source in images], self.encoder, max_pixels=self.limits.max_pixels,
                          views=views)  # fmt: skip
        for (name, _), item in zip(images, items):
            item.name = name  # results name the image as the caller gave it (a data URL as images[i])
        return items

    # -- the tools ------------------------------------------------------------------------------------------------
    def classify_images(self, images: Any, labels: Any, templates: Any = None, top_k: Any = 5,
                        threshold: Any = None, reject: Any = None, min_similarity: Any = None,
                        multi_label: Any = False, views: Any = None) -> dict[str, Any]:  # fmt: skip
        """See the ``classify_images`` tool's description."""
        from ..multilabel import check_views
        from ..zeroshot import predict_embedded

        chosen_labels = self._labels(labels)
        k = self._top_k(top_k)
        cut = self._cut(threshold, reject, min_similarity)
        if multi_label and (threshold is not None or reject):
            raise LabelError("multi_label decides each label on its own: leave out threshold and reject")
        count = check_views(views) if multi_label else 1
        classifier = self._classifier(chosen_labels, templates)
        predictions = predict_embedded(classifier, self._embedded_in_place(images, count), top_k=k,
                                       multi_label=bool(multi_label), **cut)  # fmt: skip
        results = []
        for prediction in predictions:
            row = prediction.to_dict()
            results.append({"image": row["image"], "label": row.get("label"), "predictions": row.get("predictions", []),
                            "error": row.get("error"), "rejection": row.get("rejection"),
                            **({"labels": row.get("labels", [])} if multi_label else {})})  # fmt: skip
        return {"model": self.encoder.id, "results": results}

    @staticmethod
    def _cut(threshold: Any, reject: Any, min_similarity: Any) -> dict[str, Any]:
        """The "none of these" arguments, checked."""
        from ..factory import check_threshold
        from ..rejection import check_reject

        for name, value in (("threshold", threshold), ("min_similarity", min_similarity)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise LabelError(f"{name} must be a number, got {value!r}")
        check_threshold(threshold)
        check_reject(reject, min_similarity)
        return {"threshold": threshold, "reject": reject, "min_similarity": min_similarity}

    def search_images(self, text: Any = None, image: Any = None, store: Any = None, top_k: Any = 10,
                      ) -> dict[str, Any]:  # fmt: skip
        """See the ``search_images`` tool's description."""
        if not self.stores:
            raise StoreError("this server has no embedding store to search (start it with --store DIR)")
        if store is None and len(self.stores) > 1:
            raise LabelError(f"this server has {len(self.stores)} stores: name one ({', '.join(self.stores)})")
        name = store if store is not None else next(iter(self.stores))
        if name not in self.stores:
            raise LabelError(f"no store named {name!r}: the stores are {', '.join(self.stores)}")
        if (text is None) == (image is None):
            raise LabelError("give exactly one of text and image")
        k = self._top_k(top_k)
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise LabelError("text must be a non-empty string")
            check_labels([text], max_labels=1, max_chars=self.limits.max_label_chars)
            query: Any = text
        else:
            where, source = self._image(image, "image")
            item = self._embedded([(where, source)])[0]
            if item.vector is None:
                raise ImageError(where, item.error or "could not be read")
            query = item.vector
        hits = self.stores[name].search(query, top_k=k)
        return {"store": name, "model": self.encoder.id, "results": [hit.to_dict() for hit in hits]}

    def tag_folder(self, folder: Any, labels: Any, out: Any, templates: Any = None, top_k: Any = 5,
                   threshold: Any = None, reject: Any = None, min_similarity: Any = None, recursive: Any = False,
                   progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
        """See the ``tag_folder`` tool's description."""
        from ..extras import require
        from ..images import find_images
        from ..outputs import ResultWriter, format_for, read_results, side_files
        from ..tagging import TagFailure, tag_into

        chosen_labels = self._labels(labels)
        k = self._top_k(top_k)
        cut = self._cut(threshold, reject, min_similarity)
        if not isinstance(folder, str) or not isinstance(out, str):
            raise LabelError("folder and out must be paths (strings)")
        where = inside_roots(self._in_root(folder), self.roots, kind="folder")
        target = inside_roots(self._in_root(out), self.roots, kind="output")
        fmt = format_for(target)
        for side in side_files(target, fmt):  # the errors file, the lock, Parquet's partial rows: each by the one rule
            if os.path.lexists(side) and os.path.islink(side):
                raise ClientPathRefused(f"path {str(side)!r} refused: a link (result files are written only as "
                                        "themselves)")  # fmt: skip
            inside_roots(side, self.roots, kind="output")
        if fmt == "parquet":
            require("parquet", f"out {out} (Parquet)")
        with self._lock:
            if target in self._tagging:
                raise ConfigError(f"{out} is being written by another tag_folder call: wait for it to finish")
            self._tagging.add(target)
        try:
            classifier = self._classifier(chosen_labels, templates)
            readable, refused = [], []
            for path in find_images([where], recursive=bool(recursive)):
                try:
                    inside_roots(path, self.roots)  # a link in the folder may point out of the roots
                    readable.append(path)
                except ClientPathRefused as exc:
                    refused.append(TagFailure(path, str(exc)))
            writer = ResultWriter(target, fmt, follow_links=False)  # opened with O_NOFOLLOW: no link swapped in
            for failure in refused:
                writer.write_error(failure.to_dict())

            def report(done: int, total: int, summary: Any) -> None:
                if progress is not None:
                    progress(done, total, f"tagged {summary.tagged}, failed {summary.failed} of {total} images")

            summary = tag_into(writer, readable, classifier, top_k=k, on_progress=report, **cut)
        finally:
            with self._lock:
                self._tagging.discard(target)
        failures = [*refused, *summary.failures]
        counts = Counter(row.get("label") or "none" for row in read_results(target, fmt))
        return {
            "out": out,
            "errors_file": out + ".errors.jsonl",
            "tagged": summary.tagged,
            "skipped": summary.skipped,
            "failed": len(failures),
            "label_counts": dict(counts.most_common()),
            "failures": [f.to_dict() for f in failures[:50]],
            "elapsed_s": round(summary.elapsed, 2),
        }

    def embed(self, texts: Any = None, images: Any = None) -> dict[str, Any]:
        """See the ``embed`` tool's description."""
        texts = [] if texts is None else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise LabelError("texts must be a list of non-empty strings")
        if len(texts) > self.limits.max_texts:
            raise LabelError(f"{len(texts)} texts, over this server's limit of {self.limits.max_texts} per call")
        check_labels(texts, max_labels=self.limits.max_texts, max_chars=self.limits.max_label_chars)
        sources = self._images(images if images is not None else [], allow_empty=True)
        if not texts and not sources:
            raise LabelError("give texts, images or both")
        image_vectors = []
        for item in self._embedded(sources) if sources else []:
            if item.vector is None:
                raise ImageError(item.name, item.error or "could not be read")
            image_vectors.append([float(x) for x in item.vector])
        text_vectors: list[list[float]] = []
        if texts:
            with self._text_slot:
                text_vectors = [[float(x) for x in v] for v in self.encoder.encode_texts(texts)]
        return {"model": self.encoder.id, "dim": self.encoder.embed_dim, "texts": text_vectors,
                "images": image_vectors}  # fmt: skip

    def describe_labels(self, labels: Any, count: Any = 5, language: Any = None) -> dict[str, Any]:
        """See the ``describe_labels`` tool's description."""
        from ..factory import open_chat_client
        from ..rerank.describe import describe_labels

        chosen = self._labels(labels)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
            raise LabelError(f"count must be a whole number from 1 to 10, got {count!r}")
        if language is None:
            from ..prompts import guess_language

            language = guess_language(chosen)
        if language not in ("en", "zh"):
            raise LabelError(f"language must be en or zh, got {language!r}")
        client = open_chat_client(self.llm_url, self.llm_model, purpose="describe_labels")
        described, failed = describe_labels(client, chosen, template=f"describe-{language}", count=count)
        return {"descriptions": described, "failed": failed}

    def list_models(self, cached_only: Any = True) -> dict[str, Any]:
        """See the ``list_models`` tool's description."""
        from ..catalog import list_models

        entries = list_models(cached_only=bool(cached_only))
        return {"running": self.encoder.spec, "models": [entry.to_dict() for entry in entries]}

    def list_template_sets(self) -> dict[str, Any]:
        """See the ``list_template_sets`` tool's description."""
        from ..prompts import list_template_sets, load_templates

        sets = []
        for name in list_template_sets():
            found = load_templates(name)
            example = found.templates[0] if found.templates else next(iter(found.per_label.values()))[0]
            sets.append({"name": name, "language": found.language_or_guess, "example": example,
                         "templates": len(found.templates) + sum(len(p) for p in found.per_label.values()),
                         "description": found.description})  # fmt: skip
        return {"default": self.default_templates.name, "sets": sets}

    # -- resources ------------------------------------------------------------------------------------------------
    def resources(self) -> list[dict[str, str]]:
        """What a client may read: the running model, each store, each template set (``uri``, ``name``, ...)."""
        from .resources import list_resources

        return list_resources(self.stores)

    def read_resource(self, uri: str) -> dict[str, Any]:
        """The JSON content of one resource (LabelError: no such resource)."""
        from .resources import read_resource

        return read_resource(uri, self.encoder, self.stores)

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
