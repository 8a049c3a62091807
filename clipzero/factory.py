"""Wiring and defaults for every door: the one place a setting's value is decided.

Every front door (the CLI, the service, ``app.py``, the Python API's convenience functions) asks here for its
encoder, store, classifier and re-ranker. Each setting is read in one order, highest first: the explicit argument
(a flag, a request field), the environment (``CLIPZERO_*``), the config file, then the default in
:mod:`clipzero.config`. So the same setting means the same thing at every door.

The ``check_*`` and ``resolve_*`` functions validate a request without loading a model (and, except for the
device check, without importing torch): doors call them first, so a wrong request fails in milliseconds.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_MODEL, Settings, decide_model, load_settings
from .config import check_precision as check_device_precision
from .errors import ClipzeroWarning, ConfigError, LabelError, ModelUnavailableError

if TYPE_CHECKING:
    from .encoder import Encoder
    from .prompts import TemplateSet
    from .rerank.reranker import Reranker
    from .store import EmbeddingStore

__all__ = [
    "ModelChoice",
    "check_model",
    "check_threshold",
    "llm_configured",
    "open_calibration",
    "open_chat_client",
    "open_classifier",
    "open_encoder",
    "open_reranker",
    "open_store",
    "resolve_api_key",
    "resolve_labels",
    "resolve_model",
    "resolve_templates",
    "store_model",
]


@dataclass(frozen=True)
class ModelChoice:
    """Which model to load and how, every field decided.

    Attributes:
        spec: the model spec.
        device: the device asked for (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        precision: the precision asked for (``auto`` until :func:`check_model` picks the device's).
        adapter: a LoRA adapter folder, or None.
        default: True when the model is the built-in default and no argument named it (the offline error then
            says how to choose another).
    """

    spec: str
    device: str
    precision: str
    adapter: str | None = None
    default: bool = False


def resolve_model(
    model: str | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
) -> ModelChoice:
    """Decide the model, device and precision: argument > environment > config file > default.

    An existing ``store`` without an explicit ``model`` brings its own model. Nothing is loaded or imported.

    Raises:
        ConfigError: a setting holds a value clipzero cannot use (an unknown precision, say).
    """
    spec, chosen_device, chosen_precision = decide_model(
        model or (store_model(store) if store is not None else None), device, precision, settings
    )
    return ModelChoice(
        spec=spec,
        device=chosen_device,
        precision=chosen_precision,
        adapter=os.fspath(adapter) if adapter is not None else None,
        default=model is None and spec == DEFAULT_MODEL,
    )


def check_model(choice: ModelChoice) -> ModelChoice:
    """Check the model spec (without importing torch), then the device and precision against this machine (imports
    torch, loads nothing); ``auto`` precision becomes the device's fast one.

    Raises:
        ModelNotFoundError: the spec names no model (the message suggests close names).
        ModelUnavailableError: its weights are not here and cannot be fetched now.
        ConfigError: the device is not here (``cuda`` without CUDA), or cannot run the precision (fp16 on a CPU).
    """
    from .models import check_available, parse_spec

    parsed = parse_spec(choice.spec)  # a misspelt model fails here, before torch is imported
    if choice.adapter is not None and not Path(choice.adapter).exists():
        raise ConfigError(f"adapter folder {choice.adapter} not found")
    if choice.device != "auto" and choice.precision != "auto":  # decidable without torch: before the network
        check_device_precision(choice.precision, choice.device.split(":")[0])
    if choice.device not in ("auto", "cpu"):  # a GPU asked for by name: is it here? (imports torch)
        _device_precision(choice)
    with _default_model_note(choice):
        check_available(parsed)  # weights not here and no network: before torch, when the device is not named
    _, precision = _device_precision(choice)
    return ModelChoice(choice.spec, choice.device, precision, choice.adapter, choice.default)


def _device_precision(choice: ModelChoice) -> tuple[Any, str]:
    from .encoder import check_precision, default_precision, resolve_device

    device = resolve_device(choice.device)
    precision = default_precision(device) if choice.precision == "auto" else choice.precision
    check_precision(precision, device)
    return device, precision


def store_model(path: str | os.PathLike[str] | None) -> str | None:
    """The model spec an existing store was built with (None when there is no store there)."""
    if path is None or not (Path(path) / "store.sqlite").exists():
        return None
    from .store import EmbeddingStore

    with EmbeddingStore(path) as existing:
        return existing.model_spec


def open_encoder(
    model: str | ModelChoice | None = None,
    *,
    device: str | None = None,
    precision: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load the model the settings decide (see :func:`resolve_model`).

    Raises:
        ConfigError: the device or precision cannot be used here.
        ModelNotFoundError, ModelUnavailableError, ModelLoadError: see :func:`clipzero.load_model`.
    """
    from .models import load_model

    choice = (
        model
        if isinstance(model, ModelChoice)
        else resolve_model(model, device=device, precision=precision, adapter=adapter)
    )
    choice = check_model(choice)
    with _default_model_note(choice):
        return load_model(choice.spec, device=choice.device, precision=choice.precision, adapter=choice.adapter)


@contextmanager
def _default_model_note(choice: ModelChoice) -> Iterator[None]:
    """A model that is not here, when nobody named it, says how to name another."""
    try:
        yield
    except ModelUnavailableError as exc:
        if not choice.default:
            raise
        raise ModelUnavailableError(
            f"{exc}\n  (this is the default model; choose another with --model, CLIPZERO_MODEL or `model` in "
            "the config file)"
        ) from exc


def open_store(
    path: str | os.PathLike[str],
    model: str | ModelChoice | None = None,
    *,
    index: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> EmbeddingStore:
    """Open (or create) a store with its model loaded: ``model`` if given, else the model the store was built
    with, else the configured default.

    Raises:
        StoreError: the store belongs to another model than ``model``.
    """
    from .store import EmbeddingStore

    choice = (
        model
        if isinstance(model, ModelChoice)
        else resolve_model(model, device=device, precision=precision, adapter=adapter, store=path)
    )
    return EmbeddingStore(path, open_encoder(choice), index=index)


def split_labels(text: str | Sequence[str] | None) -> list[str]:
    """Labels from one text separated by commas or newlines (the web UI's and the API's text form), or from a list
    (kept as given, each stripped: a label in a list may hold a comma)."""
    if text is None:
        return []
    items = text.replace("\r", "\n").replace(",", "\n").split("\n") if isinstance(text, str) else text
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def resolve_labels(labels: Sequence[str] | None = None, labels_file: str | os.PathLike[str] | None = None,
                   ) -> list[str]:  # fmt: skip
    """The labels of a request, validated (no model needed).

    ``labels`` given as one string holding commas is split on them, as the web UI and the HTTP API split their
    text field (with a warning naming the labels, since a label may itself hold a comma: keep such labels in a
    ``labels_file``, one per line, or pass each as its own argument). Two or more labels are kept as given.

    Raises:
        LabelError: none given, a missing or unreadable file, an empty file, or an empty label.
    """
    from .zeroshot import clean_labels, read_labels

    if labels_file is not None:
        found = read_labels(labels_file)
        if not found:
            raise LabelError(f"labels file {labels_file} holds no labels (one per line; # starts a comment)")
        return clean_labels(found)
    if not labels:
        raise LabelError("give the labels: --labels L [L ...] or --labels-file F")
    if len(labels) == 1 and "," in labels[0]:
        parts = split_labels(labels[0])
        if len(parts) > 1:
            warnings.warn(
                f"--labels {labels[0]!r} was split at its commas into {len(parts)} labels ("
                + ", ".join(repr(p) for p in parts[:5])
                + (", ..." if len(parts) > 5 else "")
                + "), as the web UI and the API split them; for a label holding a comma use --labels-file",
                ClipzeroWarning,
                stacklevel=2,
            )
        return clean_labels(parts)
    return clean_labels(labels)


def resolve_templates(templates: str | os.PathLike[str] | TemplateSet | None = None) -> TemplateSet:
    """The template set: the argument (a name, a file or a loaded set), else ``CLIPZERO_TEMPLATES``, the config
    file, ``ensemble-en``; loaded and validated (no model needed).

    Raises:
        TemplateError: unknown name, unreadable file, a template without ``{label}``.
    """
    from .prompts import load_templates

    return load_templates(templates if templates is not None else load_settings().templates)


def resolve_api_key(explicit: str | None = None) -> str | None:
    """The key a server requires: the argument (``--api-key``), else ``CLIPZERO_API_KEY``, else none."""
    return explicit or os.environ.get("CLIPZERO_API_KEY") or None


def check_threshold(threshold: float | None) -> None:
    """A "none of these" threshold is a probability.

    Raises:
        ConfigError: outside [0, 1].
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a probability between 0 and 1, got {threshold}")


def open_classifier(
    encoder: Encoder,
    labels: Sequence[str] | None = None,
    *,
    head: str | os.PathLike[str] | None = None,
    templates: str | os.PathLike[str] | TemplateSet | None = None,
    text_slot: AbstractContextManager[Any] | None = None,
    label_cache: Any = True,
    calibration: str | os.PathLike[str] | Any = None,
) -> Any:
    """The zero-shot classifier for ``labels``, or the trained head at ``head`` (whose classes are the labels).

    ``calibration`` is a :class:`~clipzero.calibration.Calibration` or its file (``clipzero calibrate``).

    Raises:
        LabelError: both or neither of labels and head.
        AdapterError: a calibration of another model, or with a trained head.
    """
    calibration = open_calibration(calibration, encoder.id)
    if head is not None:
        if calibration is not None:
            from .errors import AdapterError

            raise AdapterError("--calibration is for zero-shot labels; a trained head has its own scale")
        if labels:
            raise LabelError("--head brings its own labels: leave out --labels and --labels-file")
        from .finetune.heads import load_head

        return load_head(head, encoder)
    if not labels:
        raise LabelError("give the labels: --labels L [L ...] or --labels-file F (or a trained --head)")
    from .zeroshot import ZeroShotClassifier

    chosen = resolve_templates(templates)
    return ZeroShotClassifier(encoder, labels, templates=chosen, text_slot=text_slot, label_cache=label_cache,
                              calibration=calibration)  # fmt: skip


def open_calibration(calibration: str | os.PathLike[str] | Any, model_id: str | None = None) -> Any:
    """A :class:`~clipzero.calibration.Calibration` from its file (None and loaded ones pass through), checked
    against ``model_id`` when given.

    Raises:
        AdapterError: unreadable, not a calibration file, or fitted for another model.
    """
    if calibration is None or not isinstance(calibration, (str, os.PathLike)):
        return calibration
    from .calibration import Calibration

    return Calibration.load(calibration, model_id)


def llm_configured(llm_url: str | None = None, llm_model: str | None = None) -> str | None:
    """None when an LLM server and model are set (arguments, else environment, else config file) and the ``llm``
    extra is installed; else why not (for a door to leave out what needs one)."""
    from .extras import missing

    settings = load_settings()
    if not (llm_url or settings.llm_url) or not (llm_model or settings.llm_model):
        return "needs an OpenAI-compatible LLM server: start with --llm-url and --llm-model"
    if missing("llm"):
        return "needs the llm extra: pip install 'clipzero[llm]'"
    return None


def open_chat_client(
    llm_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    *,
    timeout: float = 60.0,
    retries: int = 2,
    cache: bool = True,
    purpose: str = "this",
) -> Any:
    """The client of the OpenAI-compatible LLM server, the same at every door (re-ranking, label descriptions).

    The server, model and key are the arguments, else ``CLIPZERO_LLM_URL`` / ``CLIPZERO_LLM_MODEL`` (or the config
    file's ``llm_url`` / ``llm_model``) and ``CLIPZERO_LLM_API_KEY`` (or ``OPENAI_API_KEY``).

    Raises:
        MissingExtraError: httpx is not installed (``pip install 'clipzero[llm]'``).
        ConfigError: no server or model configured.
    """
    from .extras import require

    require("llm", purpose)
    settings = load_settings()
    url = llm_url or settings.llm_url
    name = llm_model or settings.llm_model
    if not url or not name:
        raise ConfigError(
            f"{purpose} needs an OpenAI-compatible server: give --llm-url and --llm-model (or set "
            "CLIPZERO_LLM_URL and CLIPZERO_LLM_MODEL)"
        )
    from .rerank.client import client_from_env

    return client_from_env(url, name, api_key=llm_api_key, timeout=timeout, retries=retries, cache=cache)


def open_reranker(
    templates: str | os.PathLike[str] | TemplateSet | None = None,
    *,
    llm_url: str | None = None,
    llm_model: str | None = None,
    llm_api_key: str | None = None,
    template: str | None = None,
    vision: bool = False,
    top_k: int = 5,
    workers: int = 4,
    timeout: float = 60.0,
    retries: int = 2,
    cache: bool = True,
) -> Reranker:
    """The LLM re-ranker, the same at every door.

    Its chain-of-thought template follows the label templates' language (``cot-zh`` for Chinese sets, else
    ``cot-en``) unless ``template`` names one; per-label descriptions come from the template set; the server,
    model and key are the arguments, else ``CLIPZERO_LLM_URL`` / ``CLIPZERO_LLM_MODEL`` (or the config file's
    ``llm_url`` / ``llm_model``) and ``CLIPZERO_LLM_API_KEY`` (or ``OPENAI_API_KEY``). Requests with fewer than two
    candidates keep CLIP's answer.

    Raises:
        MissingExtraError: httpx is not installed (``pip install 'clipzero[llm]'``).
        ConfigError: no server or model configured, or ``top_k`` below 2.
    """
    if top_k < 2:
        raise ConfigError(f"re-ranking needs at least 2 candidates, got --rerank-top-k {top_k}")
    client = open_chat_client(llm_url, llm_model, llm_api_key, timeout=timeout, retries=retries, cache=cache,
                              purpose="re-ranking with an LLM")  # fmt: skip
    from .rerank.describe import read_descriptions
    from .rerank.reranker import Reranker

    chosen = resolve_templates(templates)
    return Reranker(
        client,
        template or ("cot-zh" if chosen.language_or_guess == "zh" else "cot-en"),
        vision=vision,
        top_k=top_k,
        descriptions=read_descriptions(chosen),
        workers=workers,
    )
