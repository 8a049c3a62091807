"""Where clipzero keeps its files, and the user's settings.

Settings come from, highest first: an explicit argument or flag, the environment (``CLIPZERO_MODEL``,
``CLIPZERO_PRECISION``, ``CLIPZERO_DEVICE``, ``CLIPZERO_TEMPLATES``, ``CLIPZERO_LABEL_CACHE_ENTRIES``,
``CLIPZERO_LLM_URL``, ``CLIPZERO_LLM_MODEL``), the config file (``$CLIPZERO_HOME/config.toml`` or
``$CLIPZERO_CONFIG``), then the defaults below. :mod:`clipzero.factory` applies this order for every door.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from .errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TEMPLATES",
    "DEFAULT_VIDEO_EVERY_S",
    "ENV",
    "PRECISIONS",
    "Settings",
    "check_precision",
    "config_path",
    "decide_model",
    "home",
    "load_settings",
]

#: The default for users with internet: the open_clip pretrained model with the best ImageNet zero-shot top-1 at
#: about ViT-B/32 cost (72.8%, against 66.6% for ViT-B-32 laion2b_s34b_b79k and 63.3% for OpenAI's ViT-B/32).
DEFAULT_MODEL = "ViT-B-32-256:datacomp_s34b_b86k"
DEFAULT_TEMPLATES = "auto"  # ensemble-en, and ensemble-zh for each Chinese label (clipzero.languages)
#: Video files are sampled every this many seconds (and at scene changes): `--every`, and every function's default.
DEFAULT_VIDEO_EVERY_S = 2.0
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda", "mps")


def home() -> Path:
    """clipzero's own directory: ``$CLIPZERO_HOME``, else ``~/.clipzero``. Not created here."""
    env = os.environ.get("CLIPZERO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".clipzero"


def config_path() -> Path:
    """The config file: ``$CLIPZERO_CONFIG``, else ``config.toml`` in :func:`home`."""
    env = os.environ.get("CLIPZERO_CONFIG")
    return Path(env).expanduser() if env else home() / "config.toml"


@dataclass(frozen=True)
class Settings:
    """User settings, validated on creation.

    Attributes:
        model: the model spec used when none is given.
        precision: auto (the fast one for the device: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32),
            fp32, bf16, fp16 (GPU only) or int8 (CPU only).
        device: auto, cpu, cuda (or cuda:N) or mps.
        templates: the template set used when none is given (a name or a path).
        models: the user's own model names, each mapping to a spec (``mine = "ViT-B-32:/data/w.safetensors"``).
        label_cache_entries: the most label embeddings the persistent label cache keeps (least recently used
            are evicted first).
        llm_url: the OpenAI-compatible server for re-ranking and label descriptions ("" for none).
        llm_model: the model name that server serves.
    """

    model: str = DEFAULT_MODEL
    precision: str = "auto"
    device: str = "auto"
    templates: str = DEFAULT_TEMPLATES
    models: dict[str, str] = field(default_factory=dict)
    label_cache_entries: int = 100_000
    llm_url: str = ""
    llm_model: str = ""

    def __post_init__(self) -> None:
        for name in ("model", "precision", "device", "templates"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"setting {name!r} must be a non-empty string, got {value!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.device.split(":")[0] not in DEVICES:
            raise ConfigError(f"device {self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
        if not isinstance(self.models, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.models.items()
        ):
            raise ConfigError("[models] must map names to model spec strings")
        entries = self.label_cache_entries
        if isinstance(entries, str) and entries.strip().isdigit():
            object.__setattr__(self, "label_cache_entries", int(entries))
        elif isinstance(entries, bool) or not isinstance(entries, int):
            raise ConfigError(f"label_cache_entries must be a whole number, got {entries!r}")
        if self.label_cache_entries < 1:
            raise ConfigError(f"label_cache_entries must be at least 1, got {self.label_cache_entries}")
        for name in ("llm_url", "llm_model"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"setting {name!r} must be a string, got {getattr(self, name)!r}")


#: setting -> its environment variable.
ENV = {
    "model": "CLIPZERO_MODEL",
    "precision": "CLIPZERO_PRECISION",
    "device": "CLIPZERO_DEVICE",
    "templates": "CLIPZERO_TEMPLATES",
    "label_cache_entries": "CLIPZERO_LABEL_CACHE_ENTRIES",
    "llm_url": "CLIPZERO_LLM_URL",
    "llm_model": "CLIPZERO_LLM_MODEL",
}


def load_settings(path: Path | None = None) -> Settings:
    """Read the config file (if any) and the environment.

    Args:
        path: a config file to read instead of :func:`config_path`.

    Returns:
        The merged settings.

    Raises:
        ConfigError: the file is not valid TOML, has unknown keys, or a value is invalid.
    """
    path = path or config_path()
    values: dict[str, object] = {}
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        known = {f.name for f in dataclasses.fields(Settings)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"config file {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
    for key, var in ENV.items():
        if os.environ.get(var):
            values[key] = os.environ[var]
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {path} or the CLIPZERO_* environment)") from exc


def decide_model(
    model: str | None = None, device: str | None = None, precision: str | None = None, settings: Settings | None = None
) -> tuple[str, str, str]:
    """(model spec, device, precision) as every door decides them: the argument, else the environment
    (``CLIPZERO_*``), else the config file, else the default; device and precision may still be ``auto``."""
    settings = settings or load_settings()
    chosen = precision or settings.precision
    if chosen not in PRECISIONS:
        raise ConfigError(f"precision {chosen!r} is not one of {', '.join(PRECISIONS)}")
    return model or settings.model, device or settings.device, chosen


def check_precision(precision: str, device_type: str) -> None:
    """Refuse a precision the device type (``cpu``, ``cuda``, ``mps``) cannot run, before any model loads.

    Raises:
        ConfigError: an unknown precision, fp16 on a CPU, or int8 off the CPU.
    """
    if precision not in PRECISIONS[1:]:
        raise ConfigError(f"unknown precision {precision!r}: use fp32, bf16, fp16 or int8 (or auto)")
    if precision == "fp16" and device_type == "cpu":
        raise ConfigError("precision fp16 needs a GPU; on the CPU use bf16 (or int8)")
    if precision == "int8" and device_type != "cpu":
        raise ConfigError(f"precision int8 (dynamic quantization) runs on the CPU only, not {device_type}")
