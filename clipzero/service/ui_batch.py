"""The web UI's Batch tag tab: any number of uploads (or zips of them) tagged into a result file, and the tagged
images in pages, label first, filtered by label and sorted by confidence."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import ClipzeroError
from ..factory import split_labels
from .core import Service
from .fairness import batches_within
from .ui_classify import tile
from .uitext import LANGUAGES, inert, not_done, say

__all__ = ["PAGE", "Tagged", "batch_tab", "page_of"]

#: Tagged images per gallery page.
PAGE = 60

#: Thumbnails kept per run (the result file holds every image).
_THUMBNAILS = 3000

#: Runs whose tagged images can still be paged through (the oldest is forgotten first).
_RUNS = 32


@dataclass(frozen=True)
class Tagged:
    """One tagged (or unreadable) image of a run: its thumbnail file on the server, label, score and name."""

    thumbnail: str | None
    label: str
    score: float
    name: str
    error: str | None = None

    def caption(self) -> str:
        """Label first, then the score, then the file name."""
        if self.error is not None:
            return f"{self.label} · {Path(self.name).name}"
        return f"{self.label} {self.score:.2f} · {Path(self.name).name}"


class _Runs:
    """The tagged images of recent runs, by an id the browser holds: a client sends the id, never a path."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, list[Tagged]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, rows: list[Tagged]) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            self._runs[key] = rows
            while len(self._runs) > _RUNS:
                self._runs.popitem(last=False)
        return key

    def get(self, key: str | None) -> list[Tagged]:
        with self._lock:
            return list(self._runs.get(key or "", ()))


def page_of(rows: list[Tagged], label: str | None, order: str, page: float, lang: str
            ) -> tuple[list[tuple[str, str]], int, str]:  # fmt: skip
    """One page of the gallery: (thumbnail, caption) pairs, the number of pages, and the line saying which."""
    show_all = label is None or label in {say("all", code) for code in LANGUAGES}
    chosen = [r for r in rows if r.thumbnail is not None and (show_all or r.label == label)]
    if order in ("high", "low"):
        chosen.sort(key=lambda r: (r.error is None, r.score), reverse=order == "high")
    pages = max(1, -(-len(chosen) // PAGE))
    number = min(max(int(page or 1), 1), pages)
    shown = chosen[(number - 1) * PAGE : number * PAGE]
    note = say("page_of", lang, page=number, pages=pages, shown=len(shown), total=len(chosen))
    return [(r.thumbnail, r.caption()) for r in shown if r.thumbnail], pages, note


def batch_tab(service: Service, worded: Callable[..., Any], language: Any, root: Path, templates: list[str],
              languages: dict[str, str], labels: str) -> list[Any]:  # fmt: skip
    """Build the tab inside the current gr.Blocks; ``worded`` registers a component's words, ``language`` is the
    UI's language switch. Returns the tab's labels and template set (a Chinese browser starts them in Chinese)."""
    from ..outputs import ResultWriter
    from .core import DeadlineExceeded, deadline_after
    from .ui_files import count_note, thumbnails, upload_paths
    from .uploads import UploadLimits, expand_uploads

    settings = service.settings
    runs = _Runs()

    def tag(files: Any, labels_text: str, template: str, out_format: str, progress: Any) -> tuple[Any, ...]:
        paths = upload_paths(files)
        lang = languages.get(template, "en")
        if not paths:
            raise gr.Error(say("need_files", lang))
        if not split_labels(labels_text):
            raise gr.Error(say("need_labels", lang))
        deadline = deadline_after(settings.request_timeout_s * 10)
        limits = UploadLimits(settings.max_upload_bytes, settings.max_zip_entries, int(settings.max_unzip_mb * 2**20))
        out = root / f"results-{uuid.uuid4().hex}" / f"tags.{out_format}"  # served from the upload folder
        thumbs = out.parent / "thumbnails"
        rows: list[Tagged] = []
        try:
            classifier = service.classifier(split_labels(labels_text), template, deadline)
            items = expand_uploads(paths, root, limits)
            total = None if any(p.lower().endswith(".zip") for p in paths) else len(paths)
            writer = ResultWriter(out)
            tagged = failed = 0
            stopped = ""
            errors: list[str] = []
            started = time.monotonic()

            def unreadable(name: str, error: str, row: dict[str, str]) -> None:
                nonlocal failed
                failed += 1
                writer.write_error(row)
                errors.append(f"- **{inert(name)}**: {inert(error)}")
                rows.append(Tagged(_grey(thumbs), say("unreadable", lang), 0.0, name, error))

            try:
                chunks = batches_within(items, settings.max_images, service.pixel_budget,
                                        lambda item: service.price([(item.name, item.data)])[0] if item.data else 0)
                for chunk in chunks:
                    for item in chunk:
                        if item.error is not None:
                            unreadable(item.name, item.error, {"image": item.name, "error": item.error})
                    good = [(item.name, item.data) for item in chunk if item.data is not None]
                    if good:
                        predictions = service.predict_partial(classifier, good, deadline=deadline)
                        for (name, data), prediction in zip(good, predictions):
                            if prediction.error is not None:
                                unreadable(prediction.image, prediction.error, prediction.to_dict())
                                continue
                            tagged += 1
                            writer.write({**prediction.to_dict(), "sha256": hashlib.sha256(data).hexdigest()})
                            label = prediction.label or f"({say('none', lang)})"
                            picture = _save(tile(service, data, 160, deadline), thumbs, len(rows)) \
                                if len(rows) < _THUMBNAILS else None  # fmt: skip
                            score = prediction.predictions[0].score if prediction.predictions else 0.0
                            rows.append(Tagged(picture, label, float(score), name))
                    done = tagged + failed
                    rate = done / max(time.monotonic() - started, 1e-6)
                    left = f", {(total - done) / rate:.0f} s" if total and rate > 0 else ""
                    progress((done, total), desc=f"{say('tagging', lang)}: {rate:.1f}/s{left}",
                             unit=say("images_unit", lang))  # fmt: skip
            except DeadlineExceeded as exc:  # keep what was tagged; say where it stopped
                stopped = f" Stopped early: {exc}."
            finally:
                writer.close()
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        files_out = [str(out)] + ([str(writer.errors_path)] if failed else [])
        summary = say("summary", lang, tagged=tagged, failed=failed) + (say("see_errors", lang) if failed else ".")
        summary += stopped
        if errors:
            more = f"\n- ... and {len(errors) - 50} more" if len(errors) > 50 else ""
            summary += "\n\n" + "\n".join(errors[:50]) + more
        counts: dict[str, int] = {}
        for row in rows:
            if row.error is None:
                counts[row.label] = counts.get(row.label, 0) + 1
        share = {label: n / max(tagged, 1) for label, n in sorted(counts.items(), key=lambda kv: -kv[1])}
        key = runs.put(rows)
        everything = say("all", lang)
        gallery, pages, note = page_of(rows, everything, "files", 1, lang)
        choices = [everything, *share] + ([say("unreadable", lang)] if failed else [])
        return (files_out, summary, share, gallery, key, gr.Dropdown(choices=choices, value=everything),
                gr.Number(value=1, maximum=pages), note)  # fmt: skip

    def tag_in_place(files: Any, labels_text: str, template: str, out_format: str, choice: str,
                     progress: Any = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 (how Gradio asks for a progress bar)
        try:
            return ("", *tag(files, labels_text, template, out_format, progress))
        except gr.Error as exc:
            return (not_done(exc.message, choice), *[gr.skip()] * 8)

    def tag_api(files: Any, labels_text: str, template: str, out_format: str,
                progress: Any = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008
        return tag(files, labels_text, template, out_format, progress)

    def view(key: str, label: str, order: str, page: float, template: str) -> tuple[Any, ...]:
        gallery, pages, note = page_of(runs.get(key), label, order, page, languages.get(template, "en"))
        return gallery, gr.Number(value=min(max(int(page or 1), 1), pages), maximum=pages), note

    def first_page(key: str, label: str, order: str, template: str) -> tuple[Any, ...]:
        return view(key, label, order, 1, template)

    files = worded(gr.File(label=say("batch_files"), file_count="multiple", height=150, elem_id="batch-files"),
                   "batch_files")  # fmt: skip
    strip = gr.Gallery(columns=12, height=90, allow_preview=False, show_label=False, visible=False,
                       elem_id="batch-strip")
    files_note = gr.Markdown(elem_id="batch-count")
    batch_labels = worded(gr.Textbox(label=say("batch_labels"), value=labels, lines=2, elem_id="batch-labels"),
                          "batch_labels")  # fmt: skip
    with gr.Row():
        template = worded(gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                      label=say("templates"), elem_id="batch-template"), "templates")  # fmt: skip
        out_format = worded(gr.Radio(["csv", "jsonl"], value="csv", label=say("output")), "output")
    button = worded(gr.Button(say("tag"), variant="primary", elem_id="batch-button"), "tag", "value")
    message = gr.Markdown(elem_id="batch-message", elem_classes=["clipzero-message"])
    with gr.Row():
        result_files = worded(gr.File(label=say("result_files"), height=90, elem_id="batch-results"), "result_files")
        summary = gr.Markdown(elem_id="batch-summary")
    with gr.Row():
        counts = worded(gr.Label(label=say("counts"), num_top_classes=12, elem_id="batch-counts", scale=1), "counts")
        with gr.Column(scale=2):
            with gr.Row():
                only = worded(gr.Dropdown([say("all")], value=say("all"), label=say("show_label"),
                                          elem_id="batch-filter"), "show_label")  # fmt: skip
                order = worded(gr.Radio(sort_choices("en"), value="files", label=say("sort"), elem_id="batch-sort"),
                               "sort", "sort")  # fmt: skip
                page = worded(gr.Number(1, minimum=1, maximum=1, precision=0, step=1, label=say("page"),
                                        elem_id="batch-page", min_width=90), "page")  # fmt: skip
            page_note = gr.Markdown(elem_id="batch-page-note")
            gallery = worded(gr.Gallery(label=say("tagged"), columns=5, height=620, allow_preview=False,
                                        elem_id="batch-gallery"), "tagged")  # fmt: skip
    run = gr.Textbox(visible=False)  # the run's id: its images stay on the server
    files.change(lambda f, c: (count_note(f, c), thumbnails(f, root)), [files, language], [files_note, strip],
                 api_visibility="private")  # fmt: skip
    shown = [result_files, summary, counts, gallery, run, only, page, page_note]
    button.click(tag_in_place, [files, batch_labels, template, out_format, language], [message, *shown],
                 api_visibility="private")  # fmt: skip
    gr.Button(visible=False).click(tag_api, [files, batch_labels, template, out_format], shown, api_name="tag")
    for control in (only, order):
        control.change(first_page, [run, only, order, template], [gallery, page, page_note], api_visibility="private")
    page.input(view, [run, only, order, page, template], [gallery, page, page_note], api_visibility="private")
    return [batch_labels, template]


def sort_choices(lang: str) -> list[tuple[str, str]]:
    """The gallery's orders, worded in ``lang``."""
    return [(say(f"sort.{key}", lang), value) for key, value in (("files", "files"), ("high", "high"), ("low", "low"))]


def _save(picture: Any, folder: Path, number: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:06d}.jpg"
    picture.convert("RGB").save(path, format="JPEG", quality=85)
    return str(path)


def _grey(folder: Path) -> str:
    """The tile shown for an image that could not be read (one file per run)."""
    path = folder / "unreadable.png"
    if not path.is_file():
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (160, 160), (225, 225, 225)).save(path)
    return str(path)
