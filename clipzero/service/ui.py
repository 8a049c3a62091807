"""The Gradio web demo: Classify, Search, Batch tag and Model tabs over the service's one loaded model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

# At the top, not inside build_ui: Gradio reads handlers' annotations (gr.Request, gr.SelectData) by name from this
# module's globals. Only the server imports this module, and only when it serves the UI.
import gradio as gr

from ..errors import ClipzeroError
from ..factory import split_labels
from ..images import thumbnail
from .core import Service
from .ui_batch import batch_tab, sort_choices
from .ui_classify import chips, classify_view, results_file, table_headers, top_bars
from .ui_dedup import dedup_tab, kind_choices
from .ui_files import count_note, thumbnails, upload_paths
from .uitext import LANGUAGES, inert, language_of, not_done, say

__all__ = ["UI_CSS", "build_ui", "example_images"]


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


def build_ui(service: Service) -> Any:
    """The gr.Blocks app for ``service``. Every file argument goes through the service's upload rule first."""
    from .core import deadline_after
    from .uploads import read_upload

    examples, labels_en, labels_zh = example_images()
    languages = _template_languages()  # results speak their template set's language
    templates = list(languages)
    has_llm = service.has_llm
    settings = service.settings
    root = service.upload_root or Path(tempfile.gettempdir()) / "gradio"

    def answer(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool,
               reject: bool = False, multi_label: bool = False) -> Any:  # fmt: skip
        """The uploads and their results (raises gr.Error saying what was wrong)."""
        paths = upload_paths(files)
        if not paths:
            raise gr.Error(say("need_image", languages.get(template, "en")))
        if not split_labels(labels_text):
            raise gr.Error(say("need_labels", languages.get(template, "en")))
        try:
            images = [read_upload(p, root, settings.max_upload_bytes) for p in paths]
            return images, service.classify(
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

    def classify(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool,
                 reject: bool = False, multi_label: bool = False) -> Any:  # fmt: skip
        images, results = answer(files, labels_text, template, top_k, threshold, rerank, reject, multi_label)
        return classify_view(service, images, results, languages.get(template, "en"))

    def classify_in_place(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool,
                          reject: bool, multi_label: bool, choice: str) -> Any:  # fmt: skip
        """The page's Classify: a problem is said in the message area and the last results stay; the results also
        come as a CSV to download."""
        lang = languages.get(template, "en")
        try:
            images, results = answer(files, labels_text, template, top_k, threshold, rerank, reject, multi_label)
        except gr.Error as exc:
            return (not_done(exc.message, choice), *[gr.skip()] * 8)
        bars, table, notes, gallery, readable = classify_view(service, images, results, lang)
        first = say("selected", lang, name=inert(readable[0]["image"])) if readable else ""
        return "", bars, table, notes, gallery, readable, first, results_file(root, images, results), \
            chips(results, lang)  # fmt: skip

    def pick(readable: Any, template: str, selected: gr.SelectData) -> Any:
        """The clicked gallery image's top-k bars, and its name."""
        index = selected.index if isinstance(selected.index, int) else -1
        try:
            if isinstance(readable, list) and 0 <= index < len(readable):
                name = say("selected", languages.get(template, "en"), name=inert(readable[index]["image"]))
                return top_bars(readable[index]), name
        except (KeyError, TypeError):
            pass
        return {}, ""

    def search(text: str, image: Any, top_k: float) -> Any:
        try:
            deadline = deadline_after(settings.request_timeout_s)
            if image:
                _, data = read_upload(str(image), root, settings.max_upload_bytes)
                hits = service.search(image=data, top_k=int(top_k), deadline=deadline)
            elif text and text.strip():
                hits = service.search(text=text, top_k=int(top_k), deadline=deadline)
            else:
                raise gr.Error(say("need_query"))
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

    def search_in_place(text: str, image: Any, top_k: float, choice: str) -> Any:
        try:
            return "", search(text, image, top_k)
        except gr.Error as exc:
            return not_done(exc.message, choice), gr.skip()

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
                    files = w(gr.File(label=say("images"), file_count="multiple", file_types=["image"], height=150,
                                      elem_id="classify-files"), "images")  # fmt: skip
                    strip = gr.Gallery(columns=12, height=90, allow_preview=False, show_label=False, visible=False,
                                       elem_id="classify-strip")  # the first uploads, small  # fmt: skip
                    files_note = gr.Markdown(elem_id="classify-count")
                    labels = w(gr.Textbox(label=say("labels"), value=short_labels(), lines=2,
                                          elem_id="classify-labels"), "labels")  # fmt: skip
                    with gr.Row():
                        all_en = w(gr.Button(say("all_en"), size="sm"), "all_en", "value")
                        all_zh = w(gr.Button(say("all_zh"), size="sm"), "all_zh", "value")
                    with gr.Row():
                        template = w(gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                                 label=say("templates"), elem_id="classify-template"), "templates")
                        w(gr.Textbox(value=service.encoder.spec, label=say("model"), info=service.encoder.id,
                                     interactive=False, elem_id="classify-model"), "model")  # fmt: skip
                    # the button above the options: in view whatever the upload
                    button = w(gr.Button(say("classify"), variant="primary", elem_id="classify-button"),
                               "classify", "value")  # fmt: skip
                    with gr.Row():
                        top_k = w(gr.Slider(1, 20, value=5, step=1, label=say("top_k")), "top_k")
                        threshold = w(gr.Slider(0, 1, value=0, step=0.01, label=say("threshold")), "threshold")
                    reject = w(gr.Checkbox(label=say("reject"), value=False, elem_id="classify-reject"), "reject")
                    multi = w(gr.Checkbox(label=say("multi_label"), value=False, elem_id="classify-multi"),
                              "multi_label")  # fmt: skip
                    rerank = w(gr.Checkbox(label=say("rerank"), value=False, visible=has_llm), "rerank")
                with gr.Column():
                    message = gr.Markdown(elem_id="classify-message", elem_classes=["clipzero-message"])
                    gallery_out = w(gr.Gallery(label=say("gallery"), columns=4, height=520, allow_preview=False,
                                               elem_id="classify-gallery"), "gallery")  # fmt: skip
                    tags = gr.HTML(elem_id="classify-chips")  # multi-label: every label of every image
                    chosen = gr.Markdown(elem_id="classify-selected")
                    bars = w(gr.Label(label=say("top_labels"), num_top_classes=5, elem_id="classify-result"),
                             "top_labels")  # fmt: skip
                    table = w(gr.Dataframe(headers=table_headers("en"), label=say("table"), wrap=True, max_height=400,
                                           column_widths=["30%", "25%", "45%"], elem_id="classify-table"),
                              "table", "table")  # fmt: skip
                    reasoning = gr.Markdown(visible=True)
                    download = w(gr.File(label=say("result_files"), height=90, elem_id="classify-download"),
                                 "result_files")  # fmt: skip
            readable_state = gr.JSON(visible=False)  # the results behind the gallery (gr.State stalls page loads)
            shown = [bars, table, reasoning, gallery_out, readable_state]
            inputs = [files, labels, template, top_k, threshold, rerank, reject, multi]
            button.click(classify_in_place, [*inputs, language], [message, *shown, chosen, download, tags],
                         api_visibility="private")  # fmt: skip
            gr.Button(visible=False).click(classify, inputs, shown, api_name="classify")  # the API: errors raise
            files.change(lambda f, c: (count_note(f, c), thumbnails(f, root)), [files, language],
                         [files_note, strip], api_visibility="private")  # fmt: skip
            gallery_out.select(pick, [readable_state, template], [bars, chosen], api_visibility="private")
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
                search_message = gr.Markdown(elem_id="search-message", elem_classes=["clipzero-message"])
                gallery = w(gr.Gallery(label=say("nearest"), columns=6, elem_id="search-gallery"), "nearest")
                for event in (go.click, query.submit):
                    event(search_in_place, [query, query_image, count, language], [search_message, gallery],
                          api_visibility="private")  # fmt: skip
                gr.Button(visible=False).click(search, [query, query_image, count], gallery, api_name="search")
            with w(gr.Tab(say("tab.dedup")), "tab.dedup"):
                dedup_tab(service, w, language, root)
        with w(gr.Tab(say("tab.batch")), "tab.batch"):
            batch_start = batch_tab(service, w, language, root, templates, languages, short_labels())
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
                elif attribute == "table":
                    updates.append(gr.update(label=say(key, code), headers=table_headers(code)))
                elif attribute == "sort":
                    updates.append(gr.update(label=say(key, code), choices=sort_choices(code)))
                elif attribute == "kinds":
                    updates.append(gr.update(label=say(key, code), choices=kind_choices(code)))
                else:
                    updates.append(gr.update(label=say(key, code)))
            return updates

        def follow_templates(name: str, choice: str) -> Any:
            """Picking a template set in another language switches the UI to it."""
            code = languages.get(name)
            return LANGUAGES[code] if code in LANGUAGES else choice

        def from_browser(request: gr.Request) -> Any:
            """The browser's preferred language (Accept-Language) as the starting one; a Chinese browser also starts
            with the Chinese example labels and template set."""
            headers = getattr(request, "headers", None) or {}
            code = language_of(headers.get("accept-language"))
            if code != "zh" or "photo-zh" not in templates:
                return LANGUAGES[code], *[gr.skip()] * 4
            return LANGUAGES[code], short_labels("zh"), "photo-zh", short_labels("zh"), "photo-zh"

        language.change(relabel, language, [c for c, _, _ in worded], api_visibility="private")
        template.input(follow_templates, [template, language], language, api_visibility="private")
        all_en.click(lambda: LANGUAGES["en"], None, language, api_visibility="private")
        all_zh.click(lambda: LANGUAGES["zh"], None, language, api_visibility="private")
        demo.load(from_browser, None, [language, labels, template, *batch_start], api_visibility="private")
    # Gradio runs one call of each event at a time unless told otherwise: one user's heavy classify would stall
    # every other user's. Calls run side by side (UI_CONCURRENCY); large decodes queue in the service's lane.
    demo.queue(default_concurrency_limit=UI_CONCURRENCY)
    return demo


UI_CONCURRENCY = 8

#: The page's style (handed to Gradio where the app is mounted): a message area stands out and stays until the next
#: run; a gallery caption wraps instead of cutting off the label.
UI_CSS = """
.clipzero-message p { border: 1px solid #d33; border-radius: 6px; padding: 6px 10px; background: #fff4f4;
                      color: #600; margin: 0; }
.cz-tags { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin: 2px 0; }
.cz-name { font-size: 12px; opacity: 0.7; margin-right: 4px; }
.cz-chip { border: 1px solid #e8a06a; border-radius: 999px; padding: 0 8px; font-size: 13px; background: #fff7f0; }
.cz-chip.cz-none { border-color: #bbb; background: #f4f4f4; }
.caption-label { white-space: normal !important; max-width: calc(100% - 8px) !important; line-height: 1.25;
                 overflow-wrap: anywhere; }
"""


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
