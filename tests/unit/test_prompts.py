"""Template sets: built-ins found on the search path, files validated loudly, per-label prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipzero import TemplateError, TemplateSet, list_template_sets, load_templates


def test_builtin_sets_exist_and_render() -> None:
    names = list_template_sets()
    for name in ("photo", "ensemble-en", "ensemble-zh", "openai-imagenet"):
        assert name in names
    assert load_templates("photo").prompts_for("cat") == ["a photo of a cat."]
    assert len(load_templates("ensemble-en").templates) >= 20
    zh = load_templates("ensemble-zh").prompts_for("猫")
    assert "一张猫的照片。" in zh


def test_openai_set_read_from_open_clip() -> None:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = load_templates("openai-imagenet")
    assert len(templates.templates) == len(OPENAI_IMAGENET_TEMPLATES)
    assert templates.prompts_for("dog")[0] == OPENAI_IMAGENET_TEMPLATES[0]("dog")


def test_txt_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# my set\n\na {label} on a table.\n  a drawing of a {label}.  \n", encoding="utf-8")
    assert load_templates(path).prompts_for("cup") == ["a cup on a table.", "a drawing of a cup."]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a photo of a thing.", "no {label} slot"),
        ("a {label} by {artist}.", "unknown slot {artist}"),
        ("a {label!r}.", "no format spec"),
        ("a {label.", "malformed"),
    ],
)
def test_bad_templates_fail_loudly(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"a {{label}}.\n{line}\n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        load_templates(path)
    assert message in str(info.value) and "line 2" in str(info.value)


def test_json_list_and_per_label_mapping(tmp_path: Path) -> None:
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(["a {label}.", "the {label}."]))
    assert load_templates(listing).prompts_for("x") == ["a x.", "the x."]
    per_label = tmp_path / "described.json"
    per_label.write_text(json.dumps({"Cat": ["a small furry pet with whiskers"], "dog": ["a loyal {label}"]}))
    described = load_templates(per_label)
    assert described.prompts_for("cat") == ["a small furry pet with whiskers"]  # looked up ignoring case
    assert described.prompts_for("dog") == ["a loyal dog"]
    with pytest.raises(TemplateError, match="no prompts for label 'bird'"):
        described.prompts_for("bird")


def test_structured_yaml(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(
        "name: pets\nlanguage: en\ntemplates:\n  - a photo of a {label}.\nlabels:\n  cat:\n    - a cat asleep\n",
        encoding="utf-8",
    )
    pets = load_templates(path)
    assert pets.name == "pets" and pets.language == "en"
    assert pets.prompts_for("cat") == ["a photo of a cat.", "a cat asleep"]
    assert pets.prompts_for("dog") == ["a photo of a dog."]
    path.write_text("templates: ['a {label}']\ncolour: red\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="unknown key"):
        load_templates(path)


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="unknown template set 'nope'"):
        load_templates("nope")
    with pytest.raises(TemplateError, match="not found"):
        load_templates(tmp_path / "absent.txt")


def test_search_path_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "house.txt").write_text("a {label} in our house.\n", encoding="utf-8")
    monkeypatch.setenv("CLIPZERO_PROMPTS_PATH", str(tmp_path))
    assert "house" in list_template_sets()
    assert load_templates("house").prompts_for("lamp") == ["a lamp in our house."]


def test_content_hash_ignores_name_but_not_content() -> None:
    a = TemplateSet(name="a", templates=("a {label}.",))
    b = TemplateSet(name="b", templates=("a {label}.",))
    c = TemplateSet(name="a", templates=("the {label}.",))
    assert a.content_hash == b.content_hash != c.content_hash


def test_label_with_braces_is_safe() -> None:
    assert load_templates("photo").prompts_for("{weird} label") == ["a photo of a {weird} label."]
