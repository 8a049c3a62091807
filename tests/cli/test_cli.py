"""The clipzero command end to end, in subprocesses, against a real tiny model directory and real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clipzero", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def test_help_does_not_import_torch() -> None:
    code = "import sys, clipzero, clipzero.cli; clipzero.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "classify" in run("--help").stdout


def test_classify_json(tiny_model_dir: Path, images: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = [str(images[0]), str(broken), str(images[2])]
    result = run(
        "classify",
        *paths,
        "--labels",
        "red",
        "green",
        "blue",
        "--model",
        str(tiny_model_dir),
        "--templates",
        "photo",
        "--top-k",
        "2",
        "--json",
    )
    assert result.returncode == 1, result.stderr  # one image failed
    data = json.loads(result.stdout)
    assert [d["image"] for d in data] == paths  # input order, paths as given
    assert set(data[1]) == {"image", "error"} and data[1]["error"]
    for item in (data[0], data[2]):
        assert set(item) == {"image", "label", "predictions"}
        assert len(item["predictions"]) == 2 and item["label"] == item["predictions"][0]["label"]
        assert {"label", "score", "similarity"} == set(item["predictions"][0])
        assert 0 <= item["predictions"][1]["score"] <= item["predictions"][0]["score"] <= 1


def test_classify_table_labels_file_and_threshold(tiny_model_dir: Path, images: list[Path], tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("# colours\nred\ngreen\n\nblue\n", encoding="utf-8")
    ok = run("classify", *map(str, images), "--labels-file", str(labels), "--model", str(tiny_model_dir))
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(str(p)) for line, p in zip(lines, images))
    unsure = run(
        "classify",
        str(images[0]),
        "--labels",
        "red",
        "green",
        "--threshold",
        "0.999",
        "--json",
        "--model",
        str(tiny_model_dir),
    )
    assert unsure.returncode == 0 and json.loads(unsure.stdout)[0]["label"] is None


def test_usage_errors_exit_2(tiny_model_dir: Path, images: list[Path], tmp_path: Path) -> None:
    no_labels = run("classify", str(images[0]), "--model", str(tiny_model_dir))
    assert no_labels.returncode == 2 and "--labels" in no_labels.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    empty_file = run("classify", str(images[0]), "--labels-file", str(empty), "--model", str(tiny_model_dir))
    assert empty_file.returncode == 2 and "no labels" in empty_file.stderr
    bad_model = run("classify", str(images[0]), "--labels", "a", "--model", "ViT-B-32:nope")
    assert bad_model.returncode == 2 and "has no pretrained tag 'nope'" in bad_model.stderr
    bad_templates = run(
        "classify", str(images[0]), "--labels", "a", "--model", str(tiny_model_dir), "--templates", "nope"
    )
    assert bad_templates.returncode == 2 and "unknown template set" in bad_templates.stderr
    assert "Traceback" not in bad_model.stderr + bad_templates.stderr


def test_offline_model_exit_1_with_clear_message(images: list[Path]) -> None:
    result = run("classify", str(images[0]), "--labels", "a", "b")  # the default model is not cached here
    assert result.returncode == 1
    assert "not available offline" in result.stderr and "Traceback" not in result.stderr


def test_duplicate_label_warning_on_stderr(tiny_model_dir: Path, images: list[Path]) -> None:
    result = run("classify", str(images[0]), "--labels", "red", "Red", "--json", "--model", str(tiny_model_dir))
    assert result.returncode == 0
    assert "warning: duplicate label 'Red'" in result.stderr
    assert [p["label"] for p in json.loads(result.stdout)[0]["predictions"]] == ["red"]


def test_models_and_info(tiny_model_dir: Path) -> None:
    listing = run("models", "--json")
    assert listing.returncode == 0
    entries = {e["spec"]: e for e in json.loads(listing.stdout)}
    assert entries["ViT-B-32-256:datacomp_s34b_b86k"]["description"] == "the default"
    assert entries["ViT-B-32:laion2b_s34b_b79k"]["cached"] is False
    info = run("info", str(tiny_model_dir), "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["embed_dim"] == 32 and data["memory_bytes"]["fp32"] == 4 * data["params_total"]
    text = run("info", str(tiny_model_dir))
    assert "memory" in text.stdout and "GFLOP per image" in text.stdout


@pytest.mark.parametrize("action", [["list"], ["show", "ensemble-zh", "--label", "猫"]])
def test_prompts_commands(action: list[str]) -> None:
    result = run("prompts", *action)
    assert result.returncode == 0
    assert ("ensemble-zh" in result.stdout) if action == ["list"] else ("一张猫的照片。" in result.stdout)


def test_a_mistyped_command_line_gets_the_mistake_and_where_help_is_not_the_usage_block() -> None:
    result = run("index", "add")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["clipzero index add: error: the following arguments are required: PATH",
                                          "(see 'clipzero index add --help')"]  # fmt: skip


def test_the_tag_bar_shows_one_speed(monkeypatch: Any) -> None:
    import io

    from clipzero.cli import options

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with options.progress(10, quiet=False, own_speed=True) as bar:
        bar.set_postfix_str("85.1 images/s", refresh=False)
        bar.update(4)
        bar.refresh()
    shown = screen.getvalue()
    assert "85.1 images/s" in shown and "img/s" not in shown and "s/img" not in shown
