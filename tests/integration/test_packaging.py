"""The built wheel carries the template sets and the bundled model, and finds them once installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_prompts_and_assets(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp_path / "dist").glob("clipzero-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    code = (
        "import clipzero, clipzero.prompts as p, clipzero.models as m; "
        f"assert clipzero.__file__.startswith({str(target)!r}), clipzero.__file__; "
        "print(sorted(p.list_template_sets())); "
        "print(m.parse_spec('clipzero-shapes').path)"
    )
    # -I isolates from the source checkout; the target directory comes first, the venv supplies torch and friends.
    site = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = [{str(target)!r}, {site!r}]; " + code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "ensemble-zh" in out.stdout and "photo" in out.stdout
    assert str(target) in out.stdout.splitlines()[-1]
    assert (target / "clipzero" / "assets" / "clipzero-shapes" / "open_clip_model.safetensors").is_file()
