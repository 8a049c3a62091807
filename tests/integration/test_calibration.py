"""Calibrated probabilities and a fitted rejection cut: `clipzero calibrate` on the bundled model's shifted tasks,
applied with --calibration; `clipzero eval` reports ECE before and after and the rejection figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipzero.calibration import Calibration, fit_temperature
from clipzero.errors import AdapterError
from clipzero.rejection import RejectionRule

LISTED = [("red", "circle"), ("blue", "star"), ("green", "cross"), ("yellow", "heart"), ("purple", "triangle"),
          ("orange", "square"), ("pink", "diamond"), ("black", "hexagon")]  # fmt: skip
NEAR = [("red", "square"), ("blue", "triangle"), ("green", "circle"), ("yellow", "star"), ("purple", "circle"),
        ("orange", "star"), ("black", "cross"), ("pink", "heart")]  # fmt: skip


def test_the_fitted_temperature_is_the_one_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (4000, 6))
    scaled = logits / 2.5
    probabilities = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(6, p=p) for p in probabilities])
    assert fit_temperature(logits, truth) == pytest.approx(2.5, rel=0.1)


def test_a_calibration_file_round_trips_and_refuses_another_model(tmp_path: Path) -> None:
    saved = Calibration("model-a", 1.7, RejectionRule(0.31, 0.05, "calibration"), {"dataset": "d"})
    path = saved.save(tmp_path / "c.json")
    assert Calibration.load(path, "model-a") == saved
    with pytest.raises(AdapterError, match="fitted for model 'model-a', not 'model-b'"):
        Calibration.load(path, "model-b")
    (tmp_path / "bad.json").write_text('{"format": "clipzero-calibration", "model_id": "m", "temperature": -1}')
    with pytest.raises(AdapterError, match="temperature must be positive"):
        Calibration.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(AdapterError, match="not a clipzero calibration file"):
        Calibration.load(tmp_path / "other.json")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clipzero", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from clipzero.synthetic.tasks import write_task

    root = tmp_path_factory.mktemp("tasks")
    write_task(root / "outline", style="outline", combos=LISTED, per_split={"train": 16, "test": 16}, seed=3)
    write_task(root / "plain", style="plain", combos=LISTED, per_split={"train": 12, "test": 12}, seed=4)
    write_task(root / "near", style="plain", combos=NEAR, per_split={"all": 8}, seed=5)
    return {name: root / name for name in ("outline", "plain", "near")}


@pytest.mark.slow
def test_calibrate_halves_ece_on_the_outline_task_and_classify_applies_it(tasks: dict[str, Path],
                                                                          tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "calib.json"
    common = ["--model", "clipzero-shapes", "--templates", "photo", "--precision", "fp32"]
    result = run("calibrate", str(tasks["outline"]), *common, "--shots", "8", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ece_after"] <= report["ece_before"] / 2, report
    assert report["fit_images"] == 8 * 16 and report["test_images"] == 8 * 16  # the test split was not fitted on
    picture = next((tasks["outline"] / "test" / "red_circle").iterdir())
    labels = ["--labels", *[f"{c} {s}" for c, s in LISTED]]
    plain = json.loads(run("classify", str(picture), *labels, *common, "--json", "-q").stdout)[0]
    calibrated = json.loads(run("classify", str(picture), *labels, *common, "--json", "-q", "--calibration",
                                str(out)).stdout)[0]  # fmt: skip
    assert [p["label"] for p in plain["predictions"]] == [p["label"] for p in calibrated["predictions"]]
    assert calibrated["predictions"][0]["score"] != pytest.approx(plain["predictions"][0]["score"], abs=1e-3)
    other = run("classify", str(picture), *labels, "--model", str(Path("nowhere")), "--calibration", str(out))
    assert other.returncode == 2  # the model is unknown: refused before anything loads


@pytest.mark.slow
def test_out_of_set_images_fit_the_rejection_cut_and_eval_reports_it(tasks: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "calib.json"
    common = ["--model", "clipzero-shapes", "--templates", "photo", "--precision", "fp32"]
    result = run("calibrate", str(tasks["plain"]), *common, "--shots", "6", "--out", str(out), "--out-of-set",
                 str(tasks["near"]), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rejection = json.loads(result.stdout)["rejection"]
    for figures in (rejection["calibrated"], rejection["reference"]):
        assert figures["out_of_set_rejected"] >= 0.9 and figures["in_set_kept_correct"] >= 0.9, rejection
    saved = Calibration.load(out)
    assert saved.rule is not None and saved.rule.source == "calibration"
    near = sorted((tasks["near"] / "all" / "red_square").iterdir())[:2]
    rows = json.loads(run("classify", *map(str, near), "--labels", *[f"{c} {s}" for c, s in LISTED], *common,
                          "--reject", "auto", "--calibration", str(out), "--json", "-q").stdout)  # fmt: skip
    assert all(r["label"] is None and r["rejection"]["source"] == "calibration" for r in rows)
    result = run("eval", str(tasks["plain"]), *common, "--shots", "4", "--out-of-set", str(tasks["near"]), "--json")
    assert result.returncode == 0, result.stderr
    calibration = json.loads(result.stdout)["methods"]["zeroshot"]["calibration"]
    assert {"ece_before", "ece_after", "temperature"} <= set(calibration)
    assert calibration["rejection"]["reference"]["auroc"] >= 0.9
