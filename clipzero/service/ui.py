"""The Gradio web demo: Classify, Search, Batch tag and Model tabs over the service's one loaded model."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from pathlib import Path
from typing import Any

# At the top, not inside build_ui: Gradio reads handlers' annotations (gr.Request, gr.SelectData) by name from this
# module's globals. Only the server imports this module, and only when it serves the UI.
import gradio as gr

from ..errors import ClipzeroError
from ..factory import split_labels
from ..images import thumbnail
from .core import Service
from .fairness import batches_within
from .ui_classify import classify_view, tile, top_bars
from .ui_dedup import dedup_tab
from .uitext import LANGUAGES, inert, language_of, say

__all__ = ["build_ui", "example_images"]


def example_images() -> tuple[list[str], str, str]:
    """Example images and their English and Chinese label lists (every colour x shape): the checkout's examples/,
    else freshly rendered."""
    here = Path(__file__).resolve().parents[2] / "examples"
    if not (here / "labels-en.txt").is_file():
        from ..synthetic.examples import write_examples

        here = Path(tempfile.mkdtemp(prefix="clipzero-examples-"))
        write_examples(here)
    from ..zeroshot import read_labels

    images = sorted(str(p) for p in here.glob("*.png"))
    return images, ", ".join(read_labels(here / "labels-en.txt")), ", ".join(read_labels(here / "labels-zh.txt"))


def short_labels(language: str = "en") -> str:
    """The example images' own labels: a short list to start from (the full one is a click away)."""
    from ..synthetic.examples import EXAMPLES
    from ..synthetic.world import combination_label

    return ", ".join(combination_label(colour, shape, language) for colour, shape in EXAMPLES)


def _template_languages() -> dict[str, str]:
    """Each template set's language code ("en", "zh"), by name."""
    from ..prompts import list_template_sets, load_templates

    return {name: load_templates(name).language_or_guess for name in list_template_sets()}


def _model_markdown(service: Service, language: str = "en") -> str:
    from ..modelinfo import format_bytes, memory_by_precision

    encoder = service.encoder
    towers: dict[str, int] = {}
    for name, parameter in encoder.model.named_parameters():
        tower = "image" if name.startswith("visual.") else "text" if not name.startswith("logit_") else "other"
        towers[tower] = towers.get(tower, 0) + parameter.numel()
    total = sum(towers.values())
    # Quantized int8 weights are not parameters: count the model as loaded in fp32 terms, as `clipzero info` does.
    memory = memory_by_precision(encoder.model) if encoder.precision != "int8" else None
    rows = "\n".join(f"| {k} | {format_bytes(v)} |" for k, v in (memory or {}).items())
    table = (
        f"\n\n| {say('card.weights', language)} | {say('card.memory', language)} |\n|---|---|\n{rows}\n"
        if memory
        else f"\n\n{say('card.no_memory', language)}\n"
    )
    names = {"en": "English", "zh": "Chinese"} if language != "zh" else {"en": "英文", "zh": "中文"}
    found = sorted(set(_template_languages().values()))
    towers_text = say("card.towers", language, image=f"{towers.get('image', 0) / 1e6:.1f}",
                      text=f"{towers.get('text', 0) / 1e6:.1f}")  # fmt: skip
    rows_top = [
        ("id", f"`{encoder.id}`"),
        (say("card.architecture", language), encoder.arch),
        (say("card.parameters", language), f"{total / 1e6:.1f} M: {towers_text}"),
        (say("card.running", language), f"{encoder.precision} {say('card.on', language)} {encoder.device}"),
        (say("card.embeddings", language),
         say("card.dims", language, dim=encoder.embed_dim, context=encoder.context_length)),
        (say("card.templates", language), ", ".join(names.get(code, code) for code in found)),
    ]  # fmt: skip
    return f"### {encoder.spec}\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows_top) + table


def _upload_paths(files: Any) -> list[str]:
    """The paths Gradio hands a handler for a File input (checked against the upload folder by the caller)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(f, "name", None) or getattr(f, "path", None) or f) for f in items]


def build_ui(service: Service) -> Any:
    """The gr.Blocks app for ``service``. Every file argument goes through the service's upload rule first."""
    from .core import DeadlineExceeded, deadline_after
    from .uploads import UploadLimits, expand_uploads, read_upload

    examples, labels_en, labels_zh = example_images()
    languages = _template_languages()  # results speak their template set's language
    templates = list(languages)
    has_llm = service.has_llm
    settings = service.settings
    root = service.upload_root or Path(tempfile.gettempdir()) / "gradio"

    def classify(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool,
                 reject: bool = False, multi_label: bool = False) -> Any:  # fmt: skip
        paths = _upload_paths(files)
        if not paths:
            raise gr.Error("Upload an image or pick an example first.")
        try:
            images = [read_upload(p, root, settings.max_upload_bytes) for p in paths]
            results = service.classify(
                images,
                split_labels(labels_text),
                templates=template,
                top_k=int(top_k),
                threshold=(threshold or None) if not multi_label else None,
                rerank=rerank and not multi_label,
                deadline=deadline_after(settings.request_timeout_s),
                reject="auto" if reject and not multi_label else None,
                multi_label=multi_label,
            )
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        return classify_view(service, images, results, languages.get(template, "en"))

    def pick(readable: Any, selected: gr.SelectData) -> Any:
        """The clicked gallery image's top-k bars."""
        index = selected.index if isinstance(selected.index, int) else -1
        try:
            return top_bars(readable[index]) if isinstance(readable, list) and 0 <= index < len(readable) else {}
        except (KeyError, TypeError):
            return {}

    def search(text: str, image: Any, top_k: float) -> Any:
        try:
            deadline = deadline_after(settings.request_timeout_s)
            if image:
                _, data = read_upload(str(image), root, settings.max_upload_bytes)
                hits = service.search(image=data, top_k=int(top_k), deadline=deadline)
            elif text and text.strip():
                hits = service.search(text=text, top_k=int(top_k), deadline=deadline)
            else:
                raise gr.Error("Type a query or give an image.")
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        gallery = []
        for hit in hits:
            try:
                picture = thumbnail(hit["path"], max_pixels=settings.max_pixels)
                gallery.append((picture, f"{Path(hit['path']).name}  {hit['score']:.3f}"))
            except ClipzeroError:
                continue  # an indexed file that is gone or changed: the store's own listing still names it
        return gallery

    def batch_tag(files: Any, labels_text: str, template: str, out_format: str, progress: Any = gr.Progress()) -> Any:  # noqa: B008 (how Gradio asks for a progress bar)
        from ..outputs import ResultWriter

        paths = _upload_paths(files)
        if not paths:
            raise gr.Error("Upload images or a zip of images.")
        deadline = deadline_after(settings.request_timeout_s * 10)
        lang = languages.get(template, "en")
        limits = UploadLimits(settings.max_upload_bytes, settings.max_zip_entries, int(settings.max_unzip_mb * 2**20))
        out = root / f"results-{uuid.uuid4().hex}" / f"tags.{out_format}"  # served from the upload folder
        try:
            classifier = service.classifier(split_labels(labels_text), template, deadline)
            items = expand_uploads(paths, root, limits)
            writer = ResultWriter(out)
            tagged = failed = 0
            stopped = ""
            shown: list[tuple[Any, str, str]] = []  # (thumbnail, caption, label) for the gallery
            counts: dict[str, int] = {}
            errors: list[str] = []
            try:
                chunks = batches_within(progress.tqdm(items, desc="tagging"), settings.max_images, service.pixel_budget,
                                        lambda item: service.price([(item.name, item.data)])[0] if item.data else 0)
                for chunk in chunks:
                    for item in chunk:
                        if item.error is not None:
                            failed += 1
                            writer.write_error({"image": item.name, "error": item.error})
                            errors.append(f"- **{inert(item.name)}**: {inert(item.error)}")
                    good = [(item.name, item.data) for item in chunk if item.data is not None]
                    if not good:
                        continue
                    predictions = service.predict_partial(classifier, good, deadline=deadline)
                    for (_, data), prediction in zip(good, predictions):
                        if prediction.error is not None:
                            failed += 1
                            writer.write_error(prediction.to_dict())
                            errors.append(f"- **{inert(prediction.image)}**: {inert(prediction.error)}")
                        else:
                            tagged += 1
                            writer.write({**prediction.to_dict(), "sha256": hashlib.sha256(data).hexdigest()})
                            label = prediction.label or f"({say('none', lang)})"
                            counts[label] = counts.get(label, 0) + 1
                            if len(shown) < _GALLERY_IMAGES:
                                caption = f"{Path(prediction.image).name}: {label}"
                                shown.append((tile(service, data, 160, deadline), caption, label))
            except DeadlineExceeded as exc:  # keep what was tagged; say where it stopped
                stopped = f" Stopped early: {exc}."
            finally:
                writer.close()
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        files_out = [str(out)] + ([str(writer.errors_path)] if failed else [])
        summary = say("summary", lang, tagged=tagged, failed=failed) + (
            say("see_errors", lang) if failed else "."
        ) + stopped
        if errors:
            more = f"\n- ... and {len(errors) - 50} more" if len(errors) > 50 else ""
            summary += "\n\n" + "\n".join(errors[:50]) + more
        share = {label: n / max(tagged, 1) for label, n in sorted(counts.items(), key=lambda kv: -kv[1])}
        everything = say("all", lang)
        pictures = [(t, c) for t, c, _ in shown]
        return files_out, summary, share, pictures, pictures, gr.Dropdown(choices=[everything, *share],
                                                                           value=everything)  # fmt: skip

    def filter_gallery(everything: Any, label: str) -> Any:
        """The tagged images whose label is ``label`` (the caption after the file name)."""
        items = [(image, caption) for image, caption in everything or []]
        show_all = label is None or label in {say("all", code) for code in LANGUAGES}
        return [(image, caption) for image, caption in items
                if show_all or (caption or "").partition(": ")[2] == label]  # fmt: skip

    worded: list[tuple[Any, str, str]] = []  # (component, words key, the attribute they fill) for the switch

    def w(component: Any, key: str, attribute: str = "label") -> Any:
        worded.append((component, key, attribute))
        return component

    def header(language: str) -> str:
        return (f"# clipzero\n{say('title', language)} **{service.encoder.spec}**"
                + (say("try", language) if examples else ""))  # fmt: skip

    with gr.Blocks(title="clipzero", delete_cache=(1800, 3600)) as demo:
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                w(gr.Markdown(header("en")), "header", "header")
            with gr.Column(scale=1, min_width=260):
                language = w(gr.Radio(list(LANGUAGES.values()), value=LANGUAGES["en"], label=say("language"),
                                      elem_id="ui-language"), "language")  # fmt: skip
        with w(gr.Tab(say("tab.classify")), "tab.classify"):
            with gr.Row():
                with gr.Column():
                    files = w(gr.File(label=say("images"), file_count="multiple", file_types=["image"],
                                      elem_id="classify-files"), "images")  # fmt: skip
                    labels = w(gr.Textbox(label=say("labels"), value=short_labels(), lines=2,
                                          elem_id="classify-labels"), "labels")  # fmt: skip
                    with gr.Row():
                        all_en = gr.Button("All 64 labels", size="sm")
                        all_zh = gr.Button("全部 64 个标签", size="sm")
                    with gr.Row():
                        template = w(gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                                 label=say("templates")), "templates")  # fmt: skip
                        w(gr.Textbox(value=service.encoder.spec, label=say("model"), info=service.encoder.id,
                                     interactive=False, elem_id="classify-model"), "model")  # fmt: skip
                    with gr.Row():
                        top_k = w(gr.Slider(1, 20, value=5, step=1, label=say("top_k")), "top_k")
                        threshold = w(gr.Slider(0, 1, value=0, step=0.01, label=say("threshold")), "threshold")
                    reject = w(gr.Checkbox(label=say("reject"), value=False, elem_id="classify-reject"), "reject")
                    multi = w(gr.Checkbox(label=say("multi_label"), value=False, elem_id="classify-multi"),
                              "multi_label")  # fmt: skip
                    rerank = w(gr.Checkbox(label=say("rerank"), value=False, visible=has_llm), "rerank")
                    button = w(gr.Button(say("classify"), variant="primary", elem_id="classify-button"),
                               "classify", "value")  # fmt: skip
                with gr.Column():
                    gallery_out = w(gr.Gallery(label=say("gallery"), columns=4, allow_preview=False,
                                               elem_id="classify-gallery"), "gallery")
                    bars = w(gr.Label(label=say("top_k"), num_top_classes=5, elem_id="classify-result"), "top_k")
                    table = w(gr.Dataframe(headers=["image", "label", "top 3"], label=say("table"), wrap=True,
                                           column_widths=["30%", "25%", "45%"]), "table")  # fmt: skip
                    reasoning = gr.Markdown(visible=True)
            readable_state = gr.JSON(visible=False)  # the results behind the gallery (gr.State stalls page loads)
            button.click(classify, [files, labels, template, top_k, threshold, rerank, reject, multi],
                         [bars, table, reasoning, gallery_out, readable_state], api_name="classify")  # fmt: skip
            gallery_out.select(pick, [readable_state], bars, api_visibility="private")
            all_en.click(lambda: (labels_en, "photo"), None, [labels, template], api_visibility="private")
            all_zh.click(lambda: (labels_zh, "photo-zh"), None, [labels, template], api_visibility="private")
            if examples:  # thumbnails to click, not a table of file names
                strip = w(gr.Gallery([(p, Path(p).stem) for p in examples], label=say("examples"), columns=8,
                                     height=170, allow_preview=False, elem_id="classify-examples"),
                          "examples")  # fmt: skip

                def use_example(choice: str, selected: gr.SelectData) -> Any:
                    """The clicked example as an upload, with the short label list in the UI's language."""
                    index = selected.index if isinstance(selected.index, int) else 0
                    source = Path(examples[index % len(examples)])
                    copy = Path(tempfile.mkdtemp(prefix="example-", dir=_ensure(root))) / source.name
                    copy.write_bytes(source.read_bytes())  # an upload like any other: in the upload folder
                    code = language_of(choice)
                    return [str(copy)], short_labels(code), "photo-zh" if code == "zh" else "photo"

                strip.select(use_example, language, [files, labels, template], api_visibility="private")
        if service.store is not None:
            with w(gr.Tab(say("tab.search")), "tab.search"):
                with gr.Row():
                    query = w(gr.Textbox(label=say("query"), elem_id="search-text"), "query")
                    query_image = w(gr.Image(label=say("query_image"), type="filepath"), "query_image")
                    count = w(gr.Slider(1, 50, value=12, step=1, label=say("results")), "results")
                go = w(gr.Button(say("search"), variant="primary", elem_id="search-button"), "search", "value")
                gallery = w(gr.Gallery(label=say("nearest"), columns=6, elem_id="search-gallery"), "nearest")
                go.click(search, [query, query_image, count], gallery, api_name="search")
                query.submit(search, [query, query_image, count], gallery, api_visibility="private")
            with w(gr.Tab(say("tab.dedup")), "tab.dedup"):
                dedup_tab(service, w)
        with w(gr.Tab(say("tab.batch")), "tab.batch"):
            batch_files = w(gr.File(label=say("batch_files"), file_count="multiple", elem_id="batch-files"),
                            "batch_files")  # fmt: skip
            batch_labels = w(gr.Textbox(label=say("batch_labels"), value=short_labels(), lines=2), "batch_labels")
            with gr.Row():
                batch_template = w(gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                               label=say("templates")), "templates")  # fmt: skip
                batch_format = w(gr.Radio(["csv", "jsonl"], value="csv", label=say("output")), "output")
            batch_button = w(gr.Button(say("tag"), variant="primary", elem_id="batch-button"), "tag", "value")
            batch_out = w(gr.File(label=say("result_files")), "result_files")
            batch_summary = gr.Markdown(elem_id="batch-summary")
            with gr.Row():
                batch_counts = w(gr.Label(label=say("counts"), num_top_classes=12, elem_id="batch-counts"), "counts")
                with gr.Column():
                    batch_filter = w(gr.Dropdown([say("all")], value=say("all"), label=say("show_label")),
                                     "show_label")  # fmt: skip
                    batch_gallery = w(gr.Gallery(label=say("tagged"), columns=6, elem_id="batch-gallery"), "tagged")
            batch_state = gr.Gallery(visible=False)  # every tagged image shown, for the label filter
            batch_button.click(batch_tag, [batch_files, batch_labels, batch_template, batch_format],
                               [batch_out, batch_summary, batch_counts, batch_gallery, batch_state, batch_filter],
                               api_name="tag")  # fmt: skip
            batch_filter.change(filter_gallery, [batch_state, batch_filter], batch_gallery, api_visibility="private")
        with w(gr.Tab(say("tab.model")), "tab.model"):
            w(gr.Markdown(_model_markdown(service), elem_id="model-card"), "card", "card")

        def relabel(choice: str) -> list[Any]:
            """Every worded component in the chosen language."""
            code = language_of(choice)
            updates = []
            for _, key, attribute in worded:
                if attribute == "header":
                    updates.append(gr.update(value=header(code)))
                elif attribute == "card":
                    updates.append(gr.update(value=_model_markdown(service, code)))
                elif attribute == "value":  # a button's text
                    updates.append(gr.update(value=say(key, code)))
                else:
                    updates.append(gr.update(label=say(key, code)))
            return updates

        def follow_templates(name: str, choice: str) -> Any:
            """Picking a template set in another language switches the UI to it."""
            code = languages.get(name)
            return LANGUAGES[code] if code in LANGUAGES else choice

        def from_browser(request: gr.Request) -> str:
            """The browser's preferred language (Accept-Language) as the starting one."""
            headers = getattr(request, "headers", None) or {}
            return LANGUAGES[language_of(headers.get("accept-language"))]

        language.change(relabel, language, [c for c, _, _ in worded], api_visibility="private")
        template.input(follow_templates, [template, language], language, api_visibility="private")
        all_en.click(lambda: LANGUAGES["en"], None, language, api_visibility="private")
        all_zh.click(lambda: LANGUAGES["zh"], None, language, api_visibility="private")
        demo.load(from_browser, None, language, api_visibility="private")
    # Gradio runs one call of each event at a time unless told otherwise: one user's heavy classify would stall
    # every other user's. Calls run side by side (UI_CONCURRENCY); large decodes queue in the service's lane.
    demo.queue(default_concurrency_limit=UI_CONCURRENCY)
    return demo


UI_CONCURRENCY = 8


#: Tagged images shown in the batch tag gallery (the result file holds them all).
_GALLERY_IMAGES = 120


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
