"""`clipzero eval` and `clipzero finetune`, and using what they write with classify and tag, in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run

COMBOS = [("red", "circle"), ("blue", "star"), ("green", "cross"), ("yellow", "heart"), ("purple", "triangle")]


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipzero.synthetic.tasks import write_task

    root = tmp_path_factory.mktemp("cli-task")
    write_task(root, style="outline", combos=COMBOS, per_split={"train": 10, "val": 4, "test": 6}, seed=5)
    return root


@pytest.mark.slow
def test_eval_reports_every_method(task: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "out" / "report.json"
    result = run(
        "eval", str(task), "--model", "clipzero-shapes", "--templates", "photo", "--shots", "4",
        "--method", "zeroshot", "probe", "cache", "lora", "--steps", "8", "--lora-batch-size", "8",
        "--out", str(report_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "vs zero-shot" in result.stdout and "probe" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["test_source"] == "test" and report["test_images"] == 5 * 6
    assert report["train_images"] == 5 * 4 and report["select_images"] == 5 * 4
    assert set(report["methods"]) == {"zeroshot", "probe", "cache", "lora"}
    for method, metrics in report["methods"].items():
        assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
        assert set(metrics["per_class_recall"]) == {f"{c} {s}" for c, s in COMBOS}
        assert sum(map(sum, metrics["confusion"])) == 30
        assert (report_path.parent / metrics["confusion_png"]).read_bytes().startswith(b"\x89PNG")
        assert method in {row["method"] for row in report["comparison"]}


def test_eval_rejects_wrong_label_count(task: Path) -> None:
    result = run("eval", str(task), "--model", "clipzero-shapes", "--labels", "a", "b")
    assert result.returncode == 2
    assert "2 labels given for the 5 classes" in result.stderr


def test_probe_head_with_classify_and_tag(task: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.safetensors"
    trained = run("finetune", "probe", str(task), "--model", "clipzero-shapes", "--shots", "6", "--out", str(head))
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["classes"] == 5
    images = sorted(str(p) for p in (task / "test").rglob("*.png"))
    classified = run("classify", *images, "--model", "clipzero-shapes", "--head", str(head), "--json")
    assert classified.returncode == 0, classified.stderr
    rows = json.loads(classified.stdout)
    right = sum(r["label"].replace(" ", "_") in r["image"] for r in rows)
    assert right / len(rows) >= 0.6  # the outline style: zero-shot gets far less
    out = tmp_path / "tags.jsonl"
    tagged = run("tag", str(task / "test"), "-r", "--model", "clipzero-shapes", "--head", str(head), "--out", str(out))
    assert tagged.returncode == 0, tagged.stderr
    tags = [json.loads(line) for line in out.read_text().splitlines()]
    assert {str(Path(t["image"]).resolve()): t["label"] for t in tags} == {
        str(Path(r["image"]).resolve()): r["label"] for r in rows
    }
    both = run("classify", images[0], "--model", "clipzero-shapes", "--head", str(head), "--labels", "x")
    assert both.returncode == 2 and "--head brings its own labels" in both.stderr


def test_cache_adapter_with_classify(task: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    trained = run("finetune", "cache", str(task), "--model", "clipzero-shapes", "--shots", "6", "--out", str(folder))
    assert trained.returncode == 0, trained.stderr
    assert (folder / "cache.faiss").is_file() and json.loads((folder / "adapter.json").read_text())["labels"]
    image = next((task / "test" / "red_circle").iterdir())
    classified = run("classify", str(image), "--model", "clipzero-shapes", "--head", str(folder), "--json")
    assert classified.returncode == 0, classified.stderr
    assert {p["label"] for p in json.loads(classified.stdout)[0]["predictions"]} <= {f"{c} {s}" for c, s in COMBOS}


@pytest.mark.slow
def test_lora_adapter_with_classify(task: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lora"
    trained = run(
        "finetune", "lora", str(task), "--model", "clipzero-shapes", "--shots", "4", "--steps", "6",
        "--lora-batch-size", "8", "--out", str(folder),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (folder / "adapter_config.json").is_file() and (folder / "clipzero-adapter.json").is_file()
    image = next((task / "test" / "blue_star").iterdir())
    labels = [f"{c} {s}" for c, s in COMBOS]
    classified = run(
        "classify", str(image), "--model", "clipzero-shapes", "--adapter", str(folder), "--labels", *labels, "--json"
    )
    assert classified.returncode == 0, classified.stderr
    assert json.loads(classified.stdout)[0]["label"] in labels


def test_serve_classifies_with_its_head_when_no_labels_are_sent(task: Path, tmp_path: Path) -> None:
    import httpx

    from tests.integration.test_service import start_server

    head = tmp_path / "head.safetensors"
    assert run("finetune", "probe", str(task), "--model", "clipzero-shapes", "--out", str(head)).returncode == 0
    process, url = start_server("--head", str(head), "--no-ui", home=tmp_path / "home")
    try:
        images = sorted((task / "test" / "blue_star").iterdir())[:3]
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images]
        response = httpx.post(f"{url}/v1/classify", files=files, timeout=60)
        assert response.status_code == 200, response.text
        labels = [r["label"] for r in response.json()["results"]]
        assert labels.count("blue star") >= 2  # the head was trained on this outline style
        with_labels = httpx.post(f"{url}/v1/classify", files=files, data={"labels": "dog, cat"}, timeout=60).json()
        assert {r["label"] for r in with_labels["results"]} <= {"dog", "cat"}  # labels sent: zero-shot as usual
        assert httpx.get(f"{url}/v1/models").json()["head"]["classes"] == sorted(f"{c} {s}" for c, s in COMBOS)
    finally:
        process.terminate()
        process.wait(timeout=10)
