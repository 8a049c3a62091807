"""The web UI's Duplicates tab (with a store): the store's duplicate groups as rows of thumbnails, the image to
keep first."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import ClipzeroError
from .core import Service
from .uitext import say

__all__ = ["dedup_tab"]

#: Groups shown (the JSON from /v1/dedup or `clipzero dedup --out` holds them all).
_GROUPS_SHOWN = 60


def dedup_tab(service: Service, worded: Callable[..., Any]) -> None:
    """Build the tab's components inside the current gr.Blocks; ``worded`` registers a component's words."""
    from ..dedup import KINDS, default_threshold

    with gr.Row():
        cut = worded(gr.Slider(0.05, 1.0, value=default_threshold(service.encoder.id), step=0.01,
                               label=say("dedup_cut")), "dedup_cut")  # fmt: skip
        verify = worded(gr.Checkbox(value=True, label=say("dedup_verify")), "dedup_verify")
    kinds = worded(gr.CheckboxGroup(list(KINDS), value=list(KINDS), label=say("dedup_kinds"),
                                    elem_id="dedup-kinds"), "dedup_kinds")  # fmt: skip
    go = worded(gr.Button(say("dedup_go"), variant="primary", elem_id="dedup-button"), "dedup_go", "value")
    summary = gr.Markdown(elem_id="dedup-summary")
    rows = gr.HTML(elem_id="dedup-groups")

    def run(threshold: float, check: bool, chosen: list[str]) -> tuple[str, str]:
        try:
            report = service.dedup(threshold, verify=check, kinds=list(chosen or ()))
        except ClipzeroError as exc:
            raise gr.Error(str(exc)) from exc
        groups = report["groups"]
        exact = sum(g["kind"] == "exact" for g in groups)
        text = (f"{len(groups)} group(s): {exact} exact, {len(groups) - exact} near; {report['redundant']} of "
                f"{report['images']} image(s) could go.")  # fmt: skip
        return text, "".join(_row(n, g, service.settings.max_pixels) for n, g in enumerate(groups[:_GROUPS_SHOWN], 1))

    go.click(run, [cut, verify, kinds], [summary, rows], api_name="dedup")


def _row(number: int, group: dict[str, Any], max_pixels: int) -> str:
    cells = []
    for member in group["members"]:
        keep = member["path"] == group["keep"]
        note = "keep" if keep else f"{_how(group['kind'], member.get('match'))} {member['similarity']:.3f}"
        size = f"{member['width']}x{member['height']}" if member.get("width") else ""
        cells.append(
            f'<figure class="dedup-member{" dedup-keep" if keep else ""}" style="margin:0;width:132px">'
            f'{_thumbnail(member["path"], max_pixels)}<figcaption style="font-size:12px;word-break:break-all">'
            f"<b>{note}</b> {html.escape(size)}<br>{html.escape(Path(member['path']).name)}</figcaption></figure>"
        )
    return (f'<div class="dedup-group" style="margin:8px 0"><div><b>{number}</b> · {html.escape(group["kind"])}</div>'
            f'<div style="display:flex;gap:8px;flex-wrap:wrap">{"".join(cells)}</div></div>')  # fmt: skip


def _how(group_kind: str, match: dict[str, Any] | None) -> str:
    """The kinds of copy, with the share of the kept picture a crop shows: ``cropped 81%``."""
    if not match:
        return group_kind if group_kind == "exact" else ""
    kept = f" {match['kept_area']:.0%}" if "cropped" in match["kinds"] else ""
    return html.escape("+".join(match["kinds"]) + kept)


def _thumbnail(path: str, max_pixels: int) -> str:
    """An inline JPEG of a stored image (pixels, never a server path handed to the browser to fetch)."""
    from ..images import thumbnail

    try:
        image = thumbnail(path, 128, max_pixels=max_pixels)
    except ClipzeroError:
        return '<div style="width:128px;height:128px;background:#eee">?</div>'
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/jpeg;base64,{data}" alt="" style="max-width:128px;max-height:128px">'
