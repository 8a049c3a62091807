"""The Gradio web demo: Classify, Search, Batch tag and Model tabs over the service's one loaded model."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ClipzeroError
from .core import Service, split_labels

__all__ = ["build_ui", "example_images"]


def example_images() -> tuple[list[str], str, str]:
    """Example images and their English and Chinese label lists: the checkout's examples/, else freshly rendered."""
    here = Path(__file__).resolve().parents[2] / "examples"
    if not (here / "labels-en.txt").is_file():
        from ..synthetic.examples import write_examples

        here = Path(tempfile.mkdtemp(prefix="clipzero-examples-"))
        write_examples(here)
    from ..zeroshot import read_labels

    images = sorted(str(p) for p in here.glob("*.png"))
    return images, ", ".join(read_labels(here / "labels-en.txt")), ", ".join(read_labels(here / "labels-zh.txt"))


def _paths(files: Any) -> list[str]:
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(f, "name", f)) for f in items]


def _model_markdown(service: Service) -> str:
    encoder = service.encoder
    towers: dict[str, int] = {}
    for name, parameter in encoder.model.named_parameters():
        tower = "image" if name.startswith("visual.") else "text" if not name.startswith("logit_") else "other"
        towers[tower] = towers.get(tower, 0) + parameter.numel()
    total = sum(towers.values())
    rows = "\n".join(
        f"| {label} | {total * size / 2**20:,.0f} MiB |"
        for label, size in (("fp32", 4), ("bf16 / fp16", 2), ("int8 (Linear weights)", 1))
    )
    return (
        f"**{encoder.id}**  \nprecision {encoder.precision} on {encoder.device}; embeddings of {encoder.embed_dim} "
        f"dimensions; text context {encoder.context_length} tokens.\n\n"
        f"Parameters: {total / 1e6:.1f} M (image tower {towers.get('image', 0) / 1e6:.1f} M, text tower "
        f"{towers.get('text', 0) / 1e6:.1f} M).\n\n| weights in | memory |\n|---|---|\n{rows}\n"
    )


def build_ui(service: Service) -> Any:
    """The gr.Blocks app for ``service``."""
    import gradio as gr

    from ..prompts import list_template_sets

    examples, labels_en, labels_zh = example_images()
    templates = list_template_sets()
    has_llm = service.reranker_client is not None

    def classify(files: Any, labels_text: str, template: str, top_k: float, threshold: float, rerank: bool) -> Any:
        paths = _paths(files)
        if not paths:
            raise gr.Error("Upload an image or pick an example first.")
        labels = split_labels(labels_text)
        try:
            images = [(Path(p).name, Path(p).read_bytes()) for p in paths]
            results = service.classify(
                images, labels, templates=template, top_k=int(top_k), threshold=threshold or None, rerank=rerank
            )
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        first = results[0]
        bars = {p["label"]: p["score"] for p in first.get("predictions", [])}
        table = [
            [
                r["image"],
                r.get("label") or "(none of these)",
                ", ".join(f"{p['label']} {p['score']:.3f}" for p in r["predictions"]),
            ]
            for r in results
        ]
        notes = []
        for r in results:
            info = r.get("rerank")
            if info:
                head = f"**{r['image']}**: " + (
                    "LLM's choice used" if info["used"] else f"CLIP's order kept ({info['fallback']})"
                )
                notes.append(head + ("\n\n" + info["reasoning"] if info["reasoning"] else ""))
        return bars, table, "\n\n---\n\n".join(notes)

    def search(text: str, image: Any, top_k: float) -> Any:
        try:
            if image:
                query: Any = service.image_vector(Path(image).read_bytes(), Path(image).name)
            elif text and text.strip():
                query = text
            else:
                raise gr.Error("Type a query or give an image.")
            hits = service.search(query, int(top_k))
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        return [(h["paths"][0], f"{h['score']:.3f}") for h in hits if h.get("paths")]

    def batch_tag(files: Any, labels_text: str, template: str, out_format: str, progress: Any = gr.Progress()) -> Any:  # noqa: B008 (how Gradio asks for a progress bar)
        from ..outputs import ResultWriter
        from ..tagging import TagFailure, tag_images

        paths = _paths(files)
        if not paths:
            raise gr.Error("Upload images or a zip of images.")
        work = Path(tempfile.mkdtemp(prefix="clipzero-tag-"))
        inputs = _expand(paths, work / "unzipped")
        try:
            classifier = service.classifier(split_labels(labels_text), template)
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        out = work / f"tags.{out_format}"
        writer = ResultWriter(out)
        tagged = failed = 0
        for result in progress.tqdm(tag_images(inputs, classifier), total=len(inputs), desc="tagging"):
            row = result.to_dict()
            if isinstance(result, TagFailure):
                failed += 1
                writer.write_error(row)
            else:
                tagged += 1
                row["image"] = Path(row["image"]).name
                writer.write(row)
        writer.close()
        files_out = [str(out)] + ([str(writer.errors_path)] if failed else [])
        return files_out, f"Tagged {tagged} images; {failed} could not be read" + (
            " (see the errors file)." if failed else "."
        )

    with gr.Blocks(title="clipzero") as demo:
        gr.Markdown(
            f"# clipzero\nLabel images with free-text labels, zero-shot. Model: `{service.encoder.id}`"
            + (" — try an example below." if examples else "")
        )
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(
                        label="Images", file_count="multiple", file_types=["image"], elem_id="classify-files"
                    )
                    labels = gr.Textbox(label="Labels (comma or newline separated)", value=labels_en, lines=3,
                                        elem_id="classify-labels")  # fmt: skip
                    with gr.Row():
                        template = gr.Dropdown(templates, value="photo" if "photo" in templates else None,
                                               label="Prompt templates")  # fmt: skip
                        gr.Textbox(value=service.encoder.id, label="Model", interactive=False)
                    with gr.Row():
                        top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
                        threshold = gr.Slider(0, 1, value=0, step=0.01, label="Threshold (0: always a label)")
                    rerank = gr.Checkbox(label="Re-rank with the LLM", value=False, visible=has_llm)
                    button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                with gr.Column():
                    bars = gr.Label(label="First image", num_top_classes=5, elem_id="classify-result")
                    table = gr.Dataframe(headers=["image", "label", "top-k"], label="All images", wrap=True)
                    reasoning = gr.Markdown(visible=True)
            button.click(classify, [files, labels, template, top_k, threshold, rerank], [bars, table, reasoning],
                         api_name="classify")  # fmt: skip
            if examples:
                gr.Examples(
                    [[[p], labels_en, "photo"] for p in examples[:4]] + [[[examples[4]], labels_zh, "photo-zh"]],
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
            batch_files = gr.File(label="Images or a .zip of images", file_count="multiple")
            batch_labels = gr.Textbox(label="Labels", value=labels_en, lines=3)
            with gr.Row():
                batch_template = gr.Dropdown(
                    templates, value="photo" if "photo" in templates else None, label="Templates"
                )
                batch_format = gr.Radio(["csv", "jsonl"], value="csv", label="Output")
            batch_button = gr.Button("Tag", variant="primary")
            batch_out = gr.File(label="Results")
            batch_summary = gr.Markdown()
            batch_button.click(batch_tag, [batch_files, batch_labels, batch_template, batch_format],
                               [batch_out, batch_summary], api_name="tag")  # fmt: skip
        with gr.Tab("Model"):
            gr.Markdown(_model_markdown(service))
    return demo


def _expand(paths: list[str], folder: Path) -> list[str]:
    """Image paths, with the images inside zip files extracted (names flattened, nothing outside ``folder``)."""
    from ..images import IMAGE_SUFFIXES

    out: list[str] = []
    for path in paths:
        if path.lower().endswith(".zip") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for index, info in enumerate(archive.infolist()):
                    name = Path(info.filename).name
                    if info.is_dir() or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                        continue
                    target = folder / f"{index:05d}-{name}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as source:
                        target.write_bytes(source.read(64 * 2**20 + 1)[: 64 * 2**20])
                    out.append(str(target))
        else:
            out.append(path)
    return out
