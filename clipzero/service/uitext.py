"""The web UI's words in English and Chinese: one table, so a label added to the UI has both or fails the test."""

from __future__ import annotations

import html
import re

__all__ = ["LANGUAGES", "inert", "language_of", "not_done", "say"]

# Characters Markdown acts on anywhere in a line, and what it acts on at a line's start (a heading, a list, a quote).
_INLINE = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(\s*\d*)((?<=\d)[.)]|(?<!\d)[#>+=-])", re.M)


def inert(text: object) -> str:
    """A client's text (a label, a file or zip entry name, an error that quotes them, an LLM's words) for a
    Markdown component: shown exactly as written, never read as HTML or Markdown."""
    escaped = _INLINE.sub(r"\\\1", html.escape(str(text), quote=False))
    return _LINE_START.sub(r"\1\\\2", escaped).replace("\n", "  \n")


#: The language switch's choices, by language code.
LANGUAGES = {"en": "English", "zh": "中文"}

#: key -> (English, Chinese).
_WORDS: dict[str, tuple[str, str]] = {
    "title": ("Label images with free-text labels, zero-shot. Model:", "用任意文字标签给图片分类，无需训练。模型："),
    "try": (" — try an example below.", "，可以先试下面的示例。"),
    "language": ("Language", "语言"),
    "tab.classify": ("Classify", "分类"),
    "tab.search": ("Search", "搜索"),
    "tab.batch": ("Batch tag", "批量标注"),
    "tab.model": ("Model", "模型"),
    "tab.dedup": ("Duplicates", "重复图片"),
    "dedup_cut": ("Candidate cut (cosine similarity)", "候选阈值（余弦相似度）"),
    "dedup_verify": ("Check candidates on their pixels", "按像素核对候选"),
    "dedup_go": ("Find duplicates", "查找重复"),
    "dedup_kinds": ("Kinds of copy to list", "列出的副本类型"),
    "images": ("Images", "图片"),
    "labels": ("Labels (comma or newline separated)", "标签（用逗号或换行分隔）"),
    "templates": ("Prompt templates", "提示模板"),
    "model": ("Model", "模型"),
    "top_k": ("Top-k", "候选标签数"),
    "top_labels": ("Top labels", "候选标签"),
    "threshold": ("Threshold (0: always a label)", "阈值（0：总给出标签）"),
    "reject": (
        "None of these: no label for images that fit none of the labels",
        "以上都不是：图片与所有标签都不符时不给标签",
    ),
    "multi_label": (
        "Every label that applies (scored on the whole image and crops of it)",
        "所有适用的标签（在整图及其局部上评分）",
    ),
    "rerank": ("Re-rank with the LLM", "用大语言模型重排"),
    "classify": ("Classify", "分类"),
    "gallery": ("Images (click one for its top-k)", "图片（点击一张查看前 k 个标签）"),
    "table": ("All images", "全部图片"),
    "examples": ("Examples (click one, then Classify)", "示例（点一个，再点“分类”）"),
    "query": ("Text query", "文字查询"),
    "query_image": ("...or an image", "……或一张图片"),
    "results": ("Results", "结果数"),
    "search": ("Search", "搜索"),
    "nearest": ("Nearest images", "最相近的图片"),
    "batch_files": ("Images or a .zip of images", "图片或图片的 .zip 压缩包"),
    "batch_labels": ("Labels", "标签"),
    "output": ("Output", "输出格式"),
    "tag": ("Tag", "标注"),
    "result_files": ("Results", "结果文件"),
    "counts": ("Labels (share of the tagged images)", "标签（占已标注图片的比例）"),
    "show_label": ("Show label", "只看标签"),
    "tagged": ("Tagged images", "已标注的图片"),
    "all_en": ("All 64 labels", "全部 64 个英文标签"),
    "all_zh": ("全部 64 个标签", "全部 64 个中文标签"),
    "files_count": ("{n} files, {size} (the list scrolls)", "{n} 个文件，共 {size}（列表可滚动）"),
    "sort": ("Order", "排序"),
    "sort.files": ("file order", "文件顺序"),
    "sort.high": ("most confident first", "置信度从高到低"),
    "sort.low": ("least confident first", "置信度从低到高"),
    "page": ("Page", "页码"),
    "page_of": ("Page {page} of {pages}: {shown} of {total} images",
                "第 {page} 页，共 {pages} 页：显示 {shown} 张，共 {total} 张"),
    "col.image": ("image", "图片"),
    "col.label": ("label", "标签"),
    "col.top3": ("top 3", "前三"),
    "selected": ("Top labels of **{name}**", "**{name}** 的候选标签"),
    "need_image": ("Upload an image or pick an example first.", "请先上传图片或点一个示例。"),
    "need_files": ("Upload images or a .zip of images first.", "请先上传图片或图片的压缩包。"),
    "need_labels": ("Type at least one label.", "请至少输入一个标签。"),
    "need_query": ("Type a query or give an image.", "请输入查询文字或给一张图片。"),
    "not_done": ("**Not done:** {reason} (the results below are from the last run)",
                 "**未完成：**{reason}（下方仍是上一次的结果）"),
    "tagging": ("Tagging", "正在标注"),
    "images_unit": ("images", "张图片"),
    "dedup_summary": ("{groups} group(s): {exact} exact, {near} near; {redundant} of {images} image(s) could go.",
                      "共 {groups} 组：{exact} 组完全相同，{near} 组近似；"
                      "{images} 张图片中有 {redundant} 张可以删除。"),
    "dedup_list": ("The files that could go (CSV: group, path, the image kept, kinds)",
                   "可以删除的文件列表（表格：组号、路径、保留的图片、副本类型）"),
    "keep": ("keep", "保留"),
    "kind.exact": ("exact", "完全相同"),
    "kind.near": ("near", "近似"),
    "kind.resized": ("resized", "缩放"),
    "kind.re-encoded": ("re-encoded", "重新编码"),
    "kind.cropped": ("cropped", "裁剪"),
    "kind.turned": ("turned", "旋转"),
    "kind.edited": ("edited", "调色"),
    # Words inside results (they follow the template set's language).
    "none": ("none of these", "以上都不是"),
    "nearest_label": ("nearest", "最接近"),
    "none_caption": ("none of these (nearest {label})", "以上都不是（最接近：{label}）"),
    "none_note": (
        "none of these (fit {score}; nearest {nearest!r}, similarity {similarity} under the cut {cut})",
        "以上都不是（匹配度 {score}；最接近 {nearest!r}，相似度 {similarity} 低于阈值 {cut}）",
    ),
    "unreadable_note": ("could not be read", "无法读取"),
    "llm_used": ("LLM's choice used", "采用了大语言模型的选择"),
    "clip_kept": ("CLIP's order kept ({why})", "保留 CLIP 的排序（{why}）"),
    "unreadable": ("(could not be read)", "（无法读取）"),
    "summary": ("Tagged {tagged} images; {failed} could not be read", "已标注 {tagged} 张图片；{failed} 张无法读取"),
    "see_errors": (" (see the errors file).", "（见错误文件）。"),
    "all": ("(all)", "（全部）"),
    # The model card.
    "card.architecture": ("architecture", "架构"),
    "card.parameters": ("parameters", "参数量"),
    "card.towers": ("image tower {image} M, text tower {text} M", "图像塔 {image} M，文本塔 {text} M"),
    "card.running": ("running", "运行方式"),
    "card.on": ("on", "于"),
    "card.embeddings": ("embeddings", "嵌入"),
    "card.dims": ("{dim} dimensions; text context {context} tokens", "{dim} 维；文本上下文 {context} 个词元"),
    "card.templates": ("template sets", "模板语言"),
    "card.weights": ("weights in", "权重精度"),
    "card.memory": ("memory", "内存"),
    "card.no_memory": ("(`clipzero info` lists memory by precision)", "（`clipzero info` 按精度列出内存）"),
}


def say(key: str, language: str = "en", **values: object) -> str:
    """The UI's words for ``key`` in ``language`` ("en" or "zh"; anything else reads as English)."""
    english, chinese = _WORDS[key]
    words = chinese if language == "zh" else english
    return words.format(**values) if values else words


def not_done(reason: str, choice: str | None) -> str:
    """The message area's words for a run that did not happen, in the language of the switch's ``choice``."""
    return say("not_done", language_of(choice), reason=inert(reason))


def language_of(choice: str | None) -> str:
    """The language code for a switch choice, a code or a browser's Accept-Language header ("zh-CN,zh;q=0.9")."""
    if not choice:
        return "en"
    for code, name in LANGUAGES.items():
        if choice == name:
            return code
    first = choice.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"
