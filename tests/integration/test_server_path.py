"""`clipzero classify --server URL`: the same output and exit code as the in-process path, through a running
`clipzero serve`; a clean fallback, with a warning, when there is no server or the request needs this process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import free_port, start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "server-path-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("server-path-home")
    process, url = start_server("--no-ui", "--api-key", KEY, home=home)
    yield url, home
    stop_server(process)


def classify(home: Path, *args: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLIPZERO_HOME": str(home), "CLIPZERO_API_KEY": KEY}
    env.pop("CLIPZERO_SERVER", None)
    if server is not None:
        env["CLIPZERO_SERVER"] = server
    return subprocess.run([sys.executable, "-m", "clipzero", "classify", *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_the_server_path_prints_byte_identical_json_and_the_same_exit_code(server: tuple[str, Path],
                                                                           tmp_path: Path) -> None:  # fmt: skip
    url, home = server
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    (tmp_path / "empty.png").write_bytes(b"")
    images = [*map(str, sorted(EXAMPLES.glob("*.png"))), str(tmp_path / "empty.png"), str(tmp_path / "broken.png")]
    request = [*images, "--labels", "red circle", "blue star", "green cross", "--model", "clipzero-shapes",
               "--reject", "auto", "--top-k", "2", "--json"]  # fmt: skip
    here = classify(home, *request)
    there = classify(home, *request, server=url)
    assert here.returncode == there.returncode == 1  # two images could not be read
    assert there.stdout == here.stdout
    assert f"on {url}" in there.stderr and "warning" not in there.stderr
    table_here = classify(home, *request[:-1], "--quiet")
    table_there = classify(home, *request[:-1], "--quiet", "--server", url)
    assert table_there.stdout == table_here.stdout and "empty.png" in table_here.stdout
    missing = [str(tmp_path / "missing.png"), *request[1:]]  # a path that does not exist is a wrong request
    assert classify(home, *missing).returncode == classify(home, *missing, server=url).returncode == 2


@pytest.mark.slow
def test_without_a_usable_server_it_warns_and_classifies_here(server: tuple[str, Path], tiny_model_dir: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    url, home = server
    request = [str(EXAMPLES / "blue-star.png"), "--labels", "red circle", "blue star", "--model", "clipzero-shapes"]
    nobody = classify(home, *request, server=f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 0 and "blue star" in nobody.stdout
    assert "no clipzero server answers" in nobody.stderr and "classifying here" in nobody.stderr
    other_model = classify(home, *request[:-1], str(tiny_model_dir), "--templates", "photo", server=url)
    assert other_model.returncode == 0 and "runs clipzero-shapes, not" in other_model.stderr
    assert "classified 1 image(s); model custom@sha256:" in other_model.stderr  # here, with the model asked for
    (tmp_path / "store").mkdir()
    local = classify(home, *request, "--store", str(tmp_path / "store"), server=url)
    assert "--store is not sent to a server; classifying here" in local.stderr
    wrong = classify(home, *request, "--calibration", str(EXAMPLES / "labels-en.txt"), server=url)
    assert wrong.returncode == 2 and "calibration file" in wrong.stderr  # checked before either path
