"""--rerank on classify, tag and eval, and `prompts describe`, in subprocesses against the test LLM server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.llm_server import LLMServer, Reply

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def pick_second(request: dict) -> Reply:
    """Always choose CLIP's second candidate, after some reasoning."""
    return Reply('The shape has points.\n{"choice": 2, "ranking": [2, 1]}')


def test_classify_rerank_json(llm_server: LLMServer) -> None:
    llm_server.script = pick_second
    image = str(EXAMPLES / "blue-star.png")
    args = ["classify", image, "--model", "clipzero-shapes", "--labels-file", str(EXAMPLES / "labels-en.txt")]
    plain = json.loads(run(*args, "--templates", "photo", "--json").stdout)[0]
    result = run(*args, "--templates", "photo", "--json", "--rerank", "--llm-url", llm_server.url, "--llm-model", "m")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    assert row["clip_label"] == plain["label"] == "blue star"
    assert row["label"] == plain["predictions"][1]["label"]  # the LLM's choice, one of CLIP's candidates
    assert row["rerank"]["used"] and "points" in row["rerank"]["reasoning"]
    assert len(row["predictions"]) == 5
    again = run(*args, "--templates", "photo", "--rerank", "--llm-url", llm_server.url, "--llm-model", "m")
    assert "[cached]" in again.stdout and len(llm_server.requests) == 1


def test_classify_rerank_falls_back_when_server_fails(llm_server: LLMServer) -> None:
    llm_server.script = lambda r: Reply(status=500)
    result = run(
        "classify", str(EXAMPLES / "red-circle.png"), "--model", "clipzero-shapes", "--labels", "red circle",
        "blue star", "green cross", "--rerank", "--llm-url", llm_server.url, "--llm-model", "m", "--llm-retries", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "red circle" in result.stdout.splitlines()[0]
    assert "CLIP's order kept: LLM call failed" in result.stdout and "HTTP 500" in result.stdout


def test_chinese_labels_use_the_chinese_template(llm_server: LLMServer) -> None:
    llm_server.script = lambda r: Reply('{"choice": 1}')
    result = run(
        "classify", str(EXAMPLES / "red-circle.png"), "--model", "clipzero-shapes", "--labels-file",
        str(EXAMPLES / "labels-zh.txt"), "--templates", "photo-zh", "--rerank", "--llm-url", llm_server.url,
        "--llm-model", "m", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "候选标签" in llm_server.user_text() and json.loads(result.stdout)[0]["label"] == "红色圆形"


def test_tag_rerank_keeps_reasoning_in_jsonl(llm_server: LLMServer, tmp_path: Path) -> None:
    llm_server.script = pick_second
    out = tmp_path / "tags.jsonl"
    result = run(
        "tag", str(EXAMPLES), "--model", "clipzero-shapes", "--labels-file", str(EXAMPLES / "labels-en.txt"),
        "--templates", "photo", "--out", str(out), "--rerank", "--llm-url", llm_server.url, "--llm-model", "m",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and all(r["rerank"]["used"] for r in rows)
    assert all(r["label"] == r["predictions"][0]["label"] != r["rerank"]["clip_label"] for r in rows)


def test_prompts_describe_then_classify_with_it(llm_server: LLMServer, tmp_path: Path) -> None:
    def script(request: dict) -> Reply:
        label = json.loads(re.search(r"Label: (.*)", request["messages"][-1]["content"]).group(1))  # type: ignore[union-attr]
        return Reply(json.dumps({"descriptions": [f"a {label}", f"a drawing of a {label}"]}))

    llm_server.script = script
    out = tmp_path / "described.json"
    result = run(
        "prompts", "describe", "--labels", "red circle", "blue star", "--out", str(out), "--llm-url",
        llm_server.url, "--llm-model", "m",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "descriptions for 2 of 2 labels" in result.stdout
    shown = run("prompts", "show", str(out), "--label", "blue star").stdout.splitlines()
    assert shown == ["a photo of a blue star.", "a blue star", "a drawing of a blue star"]
    classified = run(
        "classify", str(EXAMPLES / "blue-star.png"), "--model", "clipzero-shapes", "--labels", "red circle",
        "blue star", "--templates", str(out), "--json",
    )  # fmt: skip
    assert json.loads(classified.stdout)[0]["label"] == "blue star"


@pytest.mark.slow
def test_eval_reports_rerank_against_the_ensemble(llm_server: LLMServer, tmp_path: Path) -> None:
    from clipzero.synthetic.tasks import write_task

    write_task(tmp_path / "task", style="plain", combos=[("red", "circle"), ("blue", "star"), ("green", "cross")],
               per_split={"train": 2, "test": 4}, seed=1)  # fmt: skip
    llm_server.script = pick_second
    result = run(
        "eval", str(tmp_path / "task"), "--model", "clipzero-shapes", "--shots", "1", "--method", "zeroshot+rerank",
        "--llm-url", llm_server.url, "--llm-model", "m", "--rerank-top-k", "3", "--json", "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["templates"] == "auto"  # no set given: ensemble-en for these English labels
    methods = report["methods"]
    assert set(methods) == {"zeroshot", "zeroshot+rerank"}
    assert methods["zeroshot+rerank"]["fit"]["answers_used"] == 12
    assert methods["zeroshot+rerank"]["fit"]["top1_changed"] == 12  # always CLIP's second choice
    assert methods["zeroshot+rerank"]["top1"] != methods["zeroshot"]["top1"]
