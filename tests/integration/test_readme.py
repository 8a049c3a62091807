"""The READMEs' examples that can run offline are run, as a pip user would: `clipzero examples` in a fresh folder,
then every `clipzero` command shown with the bundled model, and the Python example; each prints what the README
shows (labels exactly; the scores' last digits depend on the CPU's precision)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]


def _console(text: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) for each `$ clipzero ...` line in the console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:].split("  #")[0].strip(), []))
            elif line.strip() and found:
                found[-1][1].append(line)
    return [(command, shown) for command, shown in found if command.startswith("clipzero ")]


def _offline(command: str) -> bool:
    return command.startswith("clipzero examples") or (
        "--model clipzero-shapes" in command and "examples/" in command and "serve" not in command
    )


def _shape(line: str) -> tuple[str, ...]:
    """A result line without its numbers: the image, the label (or none of these), the sign of the fit."""
    fit = re.search(r"fit ([+-])", line)
    head = line.split("[")[0].split(" fit ")[0].split()
    return (*head, fit.group(1) if fit else "")


@pytest.mark.slow
@pytest.mark.parametrize("readme", READMES, ids=[p.name for p in READMES])
def test_the_readme_commands_print_what_the_readme_shows(readme: Path, tmp_path: Path) -> None:
    commands = [(c, shown) for c, shown in _console(readme.read_text(encoding="utf-8")) if _offline(c)]
    assert commands[0][0].startswith("clipzero examples") and len(commands) >= 3
    env = {**os.environ, "CLIPZERO_HOME": str(tmp_path / "home")}
    for command, shown in commands:
        argv = command.split(" ", 1)[1]
        expanded = subprocess.run(f"{sys.executable} -m clipzero {argv}", shell=True, cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
        assert expanded.returncode == 0, (command, expanded.stderr)
        if command.startswith("clipzero classify"):
            assert [_shape(line) for line in expanded.stdout.splitlines()] == [_shape(line) for line in shown], command


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "clipzero" in block)
    env = {**os.environ, "CLIPZERO_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-m", "clipzero", "examples", "--out", "examples"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)  # fmt: skip
    shipped = sorted(p.name for p in (ROOT / "examples").iterdir())
    assert sorted(p.name for p in (tmp_path / "examples").iterdir()) == shipped  # what a checkout has, for pip users
    for name in shipped:
        assert (tmp_path / "examples" / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), name
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["examples/red-circle.png red circle",
                                             "examples/green-cross.png (none of these)"]  # fmt: skip
