"""The same setting means the same thing at every door: classify, tag, index add, eval and serve each report the
precision (and model) that the environment or the config file chose, not a default of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli import run
from tests.conftest import write_pictures
from tests.serving import free_port, stop_server


def _machine_default() -> str:
    import torch

    from clipzero.encoder import default_precision

    return default_precision(torch.device("cpu"))


def _served_precision(env: dict[str, str], home: Path) -> tuple[str, str]:
    """(precision, model id) that `clipzero serve` reports at /v1/models, started with no model flags."""
    port = free_port()
    log = open(home / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "clipzero", "serve", "--port", str(port), "--no-ui"],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    log.close()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (home / "serve.log").read_text()[-2000:]
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json()
                return info["precision"], info["model"]
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("the server did not start")
    finally:
        stop_server(process)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["environment", "config file"])
def test_every_door_reports_the_configured_precision(source: str, tiny_model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from clipzero.synthetic.tasks import write_task

    monkeypatch.delenv("CLIPZERO_PRECISION")  # the suite's own fp32 would win over a config file

    # A precision that is not this machine's own default, so a door that ignored the setting would show.
    wanted = "int8" if source == "environment" else ("fp32" if _machine_default() != "fp32" else "bf16")
    home = Path(os.environ["CLIPZERO_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if source == "environment":
        env = {"CLIPZERO_PRECISION": wanted, "CLIPZERO_MODEL": str(tiny_model_dir)}
    else:
        (home / "config.toml").write_text(f'precision = "{wanted}"\nmodel = "{tiny_model_dir}"\n')
    pics = [str(p) for p in write_pictures(tmp_path / "pics", 3)]
    task = tmp_path / "task"
    write_task(task, style="plain", combos=[("red", "circle"), ("blue", "star")],
               per_split={"train": 2, "val": 1, "test": 2}, seed=1)  # fmt: skip

    reported: dict[str, str] = {}
    classify = run("classify", *pics, "--labels", "red", "blue", "--json", env=env)
    assert classify.returncode == 0, classify.stderr
    reported["classify"] = classify.stderr.split("precision ")[1].split()[0]
    tag = run("tag", *pics, "--labels", "red", "blue", "--out", str(tmp_path / "r.jsonl"), "--json", env=env)
    assert tag.returncode == 0, tag.stderr
    reported["tag"] = json.loads(tag.stdout)["precision"]
    index = run("index", "add", *pics, "--store", str(tmp_path / "store"), "--json", env=env)
    assert index.returncode == 0, index.stderr
    reported["index add"] = json.loads(index.stdout)["precision"]
    evaluate = run("eval", str(task), "--shots", "1", "--json", "--quiet", env=env)
    assert evaluate.returncode == 0, evaluate.stderr
    reported["eval"] = json.loads(evaluate.stdout)["precision"]
    reported["serve"], served_model = _served_precision(env, tmp_path)
    python = subprocess.run([sys.executable, "-c", "import clipzero, json; e = clipzero.load_model(); "
                             "print(json.dumps([e.precision, e.id]))"], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert python.returncode == 0, python.stderr
    reported["python load_model"], python_model = json.loads(python.stdout)  # before: always fp32
    assert reported == dict.fromkeys(reported, wanted)
    assert python_model == served_model
    assert served_model == json.loads(index.stdout)["model"]  # and the same model, decided the same way
