"""Settings: file, environment and defaults, validated strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipzero import ConfigError
from clipzero.config import DEFAULT_MODEL, config_path, load_settings


@pytest.fixture(autouse=True)
def _no_precision_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about where settings come from: the suite's own CLIPZERO_PRECISION is not one of them."""
    monkeypatch.delenv("CLIPZERO_PRECISION", raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "clipzero-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")
    return home / "config.toml"


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings.model == DEFAULT_MODEL and settings.precision == "auto" and settings.templates == "auto"


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, 'model = "ViT-B-16:laion2b_s34b_b88k"\nprecision = "bf16"\ntemplates = "ensemble-zh"\n')
    assert config_path() == path
    settings = load_settings()
    assert (settings.model, settings.precision, settings.templates) == (
        "ViT-B-16:laion2b_s34b_b88k",
        "bf16",
        "ensemble-zh",
    )
    monkeypatch.setenv("CLIPZERO_PRECISION", "int8")
    assert load_settings().precision == "int8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('colour = "red"\n', "unknown key"),
        ('precision = "fp64"\n', "precision 'fp64'"),
        ("model = [1]\n", "non-empty string"),
        ("model = \n", "cannot read config"),
        ('device = "tpu"\n', "device"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_config_env_var_points_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text('device = "cpu"\n', encoding="utf-8")
    monkeypatch.setenv("CLIPZERO_CONFIG", str(other))
    assert load_settings().device == "cpu"
