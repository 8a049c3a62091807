"""The Gradio web demo: Classify, Search, Batch tag and Model tabs over the service's one loaded model."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ClipzeroError
from ..factory import split_labels
from .core import Service

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


def _languages(templates: Iterable[str]) -> str:
    from ..prompts import load_templates

    names = {"en": "English", "zh": "Chinese"}
    found = sorted({load_templates(name).language_or_guess for name in templates})
    return ", ".join(names.get(code, code) for code in found)


def _model_markdown(service: Service) -> str:
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
        f"\n\n| weights in | memory |\n|---|---|\n{rows}\n"
        if memory
        else "\n\n(`clipzero info` lists memory by precision)\n"
    )
    from ..prompts import list_template_sets

    return (
        f"### {encoder.spec}\n\n| | |\n|---|---|\n| id | `{encoder.id}` |\n| architecture | {encoder.arch} |\n"
        f"| parameters | {total / 1e6:.1f} M: image tower {towers.get('image', 0) / 1e6:.1f} M, text tower "
        f"{towers.get('text', 0) / 1e6:.1f} M |\n| running | {encoder.precision} on {encoder.device} |\n"
        f"| embeddings | {encoder.embed_dim} dimensions; text context {encoder.context_length} tokens |\n"
        f"| template sets | {_languages(list_template_sets())} |{table}"
    )


def _upload_paths(files: Any) -> list[str]:
    """The paths Gradio hands a handler for a File input (checked against the upload folder by the caller)."""
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(f, "name", None) or getattr(f, "path", None) or f) for f in items]


def _thumbnail(path: str | bytes, max_pixels: int, side: int = 256) -> Any:
    """A small copy of an image for a gallery: pixels, never a server path handed to the browser."""
    from ..images import load_image

    image = load_image(path, max_pixels=max_pixels, draft=(side, side))
    image.thumbnail((side, side))
    return image


def build_ui(service: Service) -> Any:
    """The gr.Blocks app for ``service``. Every file argument goes through the service's upload rule first."""
    import gradio as gr

    from ..prompts import list_template_sets
    from .core import DeadlineExceeded, deadline_after
    from .uploads import UploadLimits, expand_uploads, read_upload

    examples, labels_en, labels_zh = example_images()
    templates = list_template_sets()
    has_llm = service.has_llm
    settings = service.settings
    root = service.upload_root or Path(tempfile.gettempdir()) / "gradio"

    def classify(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool,
                 reject: bool = False) -> Any:  # fmt: skip
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
                threshold=threshold or None,
                rerank=rerank,
                deadline=deadline_after(settings.request_timeout_s),
                reject="auto" if reject else None,
            )
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        readable = [r for r in results if "error" not in r]
        bars = _bars(readable[0]) if readable else {}
        table = [
            [r["image"], "(could not be read)", r["error"]]
            if "error" in r
            else [r["image"], r.get("label") or "(none of these)",
                  ", ".join(f"{p['label']} {p['score']:.2f}" for p in r["predictions"][:3])]
            for r in results
        ]  # fmt: skip
        gallery = []
        for (name, data), r in zip(images, results):
            if "error" in r:
                continue
            top = r["predictions"][0]
            caption = (f"{r['label']} {top['score']:.2f}" if r.get("label") else f"none of these (nearest "
                       f"{top['label']})")  # fmt: skip
            gallery.append((_thumbnail(data, settings.max_pixels), f"{Path(name).name}: {caption}"))
        notes = [f"**{r['image']}** could not be read: {r['error']}" for r in results if "error" in r]
        for r in readable:
            cut = r.get("rejection")
            if cut and cut["rejected"]:
                notes.append(f"**{r['image']}**: none of these (fit {cut['score']:+.2f}; nearest {cut['nearest']!r}, "
                             f"similarity {cut['similarity']:.3f} under the cut {cut['threshold']:.3f})")  # fmt: skip
        for r in readable:
            info = r.get("rerank")
            if info:
                head = f"**{r['image']}**: " + (
                    "LLM's choice used" if info["used"] else f"CLIP's order kept ({info['fallback']})"
                )
                notes.append(head + ("\n\n" + info["reasoning"] if info["reasoning"] else ""))
        return bars, table, "\n\n---\n\n".join(notes), gallery, readable

    def pick(readable: Any, selected: gr.SelectData) -> Any:
        """The clicked gallery image's top-k bars."""
        index = selected.index if isinstance(selected.index, int) else -1
        try:
            return _bars(readable[index]) if isinstance(readable, list) and 0 <= index < len(readable) else {}
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
                thumbnail = _thumbnail(hit["path"], settings.max_pixels)
                gallery.append((thumbnail, f"{Path(hit['path']).name}  {hit['score']:.3f}"))
            except ClipzeroError:
                continue  # an indexed file that is gone or changed: the store's own listing still names it
        return gallery

    def batch_tag(files: Any, labels_text: str, template: str, out_format: str, progress: Any = gr.Progress()) -> Any:  # noqa: B008 (how Gradio asks for a progress bar)
        from ..outputs import ResultWriter

        paths = _upload_paths(files)
        if not paths:
            raise gr.Error("Upload images or a zip of images.")
        deadline = deadline_after(settings.request_timeout_s * 10)
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
                for chunk in _chunks(progress.tqdm(items, desc="tagging"), settings.max_images):
                    for item in chunk:
                        if item.error is not None:
                            failed += 1
                            writer.write_error({"image": item.name, "error": item.error})
                            errors.append(f"- **{item.name}**: {item.error}")
                    good = [(item.name, item.data) for item in chunk if item.data is not None]
                    if not good:
                        continue
                    predictions = service.predict_partial(classifier, good, deadline=deadline)
                    for (_, data), prediction in zip(good, predictions):
                        if prediction.error is not None:
                            failed += 1
                            writer.write_error(prediction.to_dict())
                            errors.append(f"- **{prediction.image}**: {prediction.error}")
                        else:
                            tagged += 1
                            writer.write({**prediction.to_dict(), "sha256": hashlib.sha256(data).hexdigest()})
                            label = prediction.label or "(none of these)"
                            counts[label] = counts.get(label, 0) + 1
                            if len(shown) < _GALLERY_IMAGES:
                                caption = f"{Path(prediction.image).name}: {label}"
                                shown.append((_thumbnail(data, settings.max_pixels, side=160), caption, label))
            except DeadlineExceeded as exc:  # keep what was tagged; say where it stopped
                stopped = f" Stopped early: {exc}."
            finally:
                writer.close()
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        files_out = [str(out)] + ([str(writer.errors_path)] if failed else [])
        summary = f"Tagged {tagged} images; {failed} could not be read" + (
            " (see the errors file)." if failed else "."
        ) + stopped
        if errors:
            more = f"\n- ... and {len(errors) - 50} more" if len(errors) > 50 else ""
            summary += "\n\n" + "\n".join(errors[:50]) + more
        share = {label: n / max(tagged, 1) for label, n in sorted(counts.items(), key=lambda kv: -kv[1])}
        choices = ["(all)", *share]
        pictures = [(t, c) for t, c, _ in shown]
        return files_out, summary, share, pictures, pictures, gr.Dropdown(choices=choices, value="(all)")

    def filter_gallery(everything: Any, label: str) -> Any:
        """The tagged images whose label is ``label`` (the caption after the file name)."""
        items = [(image, caption) for image, caption in everything or []]
        return [(image, caption) for image, caption in items
                if label in (None, "(all)") or (caption or "").partition(": ")[2] == label]  # fmt: skip

    with gr.Blocks(title="clipzero", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            f"# clipzero\nLabel images with free-text labels, zero-shot. Model: **{service.encoder.spec}**"
            + (" — try an example below." if examples else "")
        )
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(
                        label="Images", file_count="multiple", file_types=["image"], elem_id="classify-files"
                    )
                    labels = gr.Textbox(label="Labels (comma or newline separated)", value=short_labels(), lines=2,
                                        elem_id="classify-labels")  # fmt: skip
                    with gr.Row():
                        all_en = gr.Button("All 64 labels", size="sm")
                        all_zh = gr.Button("全部 64 个标签", size="sm")
                    with gr.Row():
                        template = gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                               label="Prompt templates")  # fmt: skip
                        gr.Textbox(value=service.encoder.spec, label="Model", info=service.encoder.id,
                                   interactive=False, elem_id="classify-model")  # fmt: skip
                    with gr.Row():
                        top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
                        threshold = gr.Slider(0, 1, value=0, step=0.01, label="Threshold (0: always a label)")
                    reject = gr.Checkbox(label="None of these: no label for images that fit none of the labels",
                                         value=False, elem_id="classify-reject")  # fmt: skip
                    rerank = gr.Checkbox(label="Re-rank with the LLM", value=False, visible=has_llm)
                    button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                with gr.Column():
                    gallery_out = gr.Gallery(label="Images (click one for its top-k)", columns=4,
                                             elem_id="classify-gallery")  # fmt: skip
                    bars = gr.Label(label="Top-k", num_top_classes=5, elem_id="classify-result")
                    table = gr.Dataframe(headers=["image", "label", "top 3"], label="All images", wrap=True,
                                         column_widths=["30%", "25%", "45%"])  # fmt: skip
                    reasoning = gr.Markdown(visible=True)
            readable_state = gr.JSON(visible=False)  # the results behind the gallery (gr.State stalls page loads)
            button.click(classify, [files, labels, template, top_k, threshold, rerank, reject],
                         [bars, table, reasoning, gallery_out, readable_state], api_name="classify")  # fmt: skip
            gallery_out.select(pick, [readable_state], bars, api_visibility="private")
            all_en.click(lambda: (labels_en, "photo"), None, [labels, template], api_visibility="private")
            all_zh.click(lambda: (labels_zh, "photo-zh"), None, [labels, template], api_visibility="private")
            if examples:
                gr.Examples(
                    [[[p], short_labels(), "photo"] for p in examples[:4]]
                    + [[[examples[4]], short_labels("zh"), "photo-zh"]],
                    inputs=[files, labels, template],
                    label="Examples (click one, then Classify)",
                )
        if service.store is not None:
            with gr.Tab("Search"):
                with gr.Row():
                    query = gr.Textbox(label="Text query")
                    query_image = gr.Image(label="...or an image", type="filepath")
                    count = gr.Slider(1, 50, value=12, step=1, label="Results")
                go = gr.Button("Search", variant="primary")
                gallery = gr.Gallery(label="Nearest images", columns=6)
                go.click(search, [query, query_image, count], gallery, api_name="search")
        with gr.Tab("Batch tag"):
            batch_files = gr.File(label="Images or a .zip of images", file_count="multiple", elem_id="batch-files")
            batch_labels = gr.Textbox(label="Labels", value=short_labels(), lines=2)
            with gr.Row():
                batch_template = gr.Dropdown(
                    templates, value="photo" if "photo" in templates else None, label="Templates"
                )
                batch_format = gr.Radio(["csv", "jsonl"], value="csv", label="Output")
            batch_button = gr.Button("Tag", variant="primary", elem_id="batch-button")
            batch_out = gr.File(label="Results")
            batch_summary = gr.Markdown(elem_id="batch-summary")
            with gr.Row():
                batch_counts = gr.Label(label="Labels (share of the tagged images)", num_top_classes=12,
                                        elem_id="batch-counts")  # fmt: skip
                with gr.Column():
                    batch_filter = gr.Dropdown(["(all)"], value="(all)", label="Show label")
                    batch_gallery = gr.Gallery(label="Tagged images", columns=6,
                                               elem_id="batch-gallery")  # fmt: skip
            batch_state = gr.Gallery(visible=False)  # every tagged image shown, for the label filter
            batch_button.click(batch_tag, [batch_files, batch_labels, batch_template, batch_format],
                               [batch_out, batch_summary, batch_counts, batch_gallery, batch_state, batch_filter],
                               api_name="tag")  # fmt: skip
            batch_filter.change(filter_gallery, [batch_state, batch_filter], batch_gallery, api_visibility="private")
        with gr.Tab("Model"):
            gr.Markdown(_model_markdown(service))
    return demo


#: Tagged images shown in the batch tag gallery (the result file holds them all).
_GALLERY_IMAGES = 120


def _bars(result: dict[str, Any]) -> dict[str, float]:
    return {p["label"]: p["score"] for p in result["predictions"]}


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
