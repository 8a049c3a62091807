"""Loading models: :func:`load_model` for any model spec (parsed by :mod:`clipzero.modelspec`, re-exported here).

A model spec is one string:

* ``ARCH:TAG``: any open_clip pretrained pair, e.g. ``ViT-B-32-256:datacomp_s34b_b86k``;
* ``hf-hub:ORG/REPO``: an open_clip model on the Hugging Face hub;
* a directory holding ``open_clip_config.json`` and weights (``local-dir:`` prefix optional);
* ``ARCH:/path/to/weights.safetensors`` (or ``.pt``, ``.bin``): local weights for an open_clip architecture;
* ``hf-transformers:ORG/NAME``, or a folder written by transformers' ``save_pretrained``: a CLIP, Chinese-CLIP,
  SigLIP or AltCLIP model of the transformers library (:mod:`clipzero.transformers_family`);
* a name registered with :func:`register_model` or under ``[models]`` in the config file.

Weights are looked for in the local caches first; an uncached model on an offline machine is a fast, clear
:class:`ModelUnavailableError`. Pickled checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import hub
from .backend import arch_needs, folder_needs, open_clip_module
from .config import decide_model
from .errors import ClipzeroError, ModelLoadError, ModelUnavailableError
from .modelspec import (
    HUB_CONFIG,
    WEIGHT_SUFFIXES,
    ModelSpec,
    RegisteredModel,
    check_available,
    is_cached,
    list_registered_models,
    parse_spec,
    register_model,
)

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = [
    "ModelSpec",
    "RegisteredModel",
    "build_model",
    "build_open_clip",
    "canonical_id",
    "check_available",
    "is_cached",
    "list_registered_models",
    "load_model",
    "open_clip_module",
    "parse_spec",
    "register_model",
]

_TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt", "spiece.model", "*.json"]


def _matching_arch(model_cfg: dict[str, object]) -> str:
    open_clip = open_clip_module()

    for name in open_clip.list_models():
        if open_clip.get_model_config(name) == model_cfg:
            return name
    return "custom"


def load_model(
    spec: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load a CLIP model for encoding, deciding what is not given as the command line does.

    Args:
        spec: a model spec (see the module docs); None uses the configured default (``CLIPZERO_MODEL``, the
            config file, else :data:`clipzero.config.DEFAULT_MODEL`).
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; None: the configured
            one (``CLIPZERO_DEVICE``, the config file, else ``auto``).
        precision: ``auto``, ``fp32``, ``bf16`` (weights cast; the fast choice on CPUs with native bf16), ``fp16``
            (GPU only) or ``int8`` (dynamic quantization of Linear layers, CPU only); None: the configured one
            (``CLIPZERO_PRECISION``, the config file, else ``auto``: bf16 where the CPU computes it natively, fp16
            on a GPU, else fp32). Ask for ``fp32`` for bit-exact parity with open_clip's own model.
        adapter: a LoRA adapter folder (``clipzero finetune lora``) to merge into the weights; the model's id
            then names the adapter too (``<base id>+lora@<hash>``), so stores and caches never mix the two.

    Returns:
        An :class:`~clipzero.encoder.Encoder`.

    Raises:
        ModelNotFoundError: the spec names nothing known.
        ModelUnavailableError: the weights are not cached here and cannot be downloaded now.
        ModelLoadError: the weights do not fit the architecture or cannot be read safely.

    Example:
        >>> encoder = load_model("ViT-B-32-256:datacomp_s34b_b86k", precision="bf16")
        >>> encoder.encode_texts(["a photo of a cat."]).shape
        (1, 512)
    """
    from .encoder import Encoder

    spec, device, precision = decide_model(spec, device, precision)  # argument > environment > config > auto
    if precision == "auto":
        from .encoder import default_precision, resolve_device

        precision = default_precision(resolve_device(device))
    parsed = parse_spec(spec)
    model, preprocess, tokenizer, arch, model_id = build_model(parsed)
    model_id = canonical_id(parsed, model_id)
    if adapter is not None and parsed.kind == "transformers":
        raise ModelLoadError("LoRA adapters (clipzero finetune lora) are for open_clip models, not transformers ones")
    if adapter is not None:
        from .finetune.lora import adapter_digest, merge_adapter

        model = merge_adapter(model, adapter, model_id)
        model_id = f"{model_id}+lora@{adapter_digest(adapter)}"
    encoder = Encoder.from_open_clip(
        model, preprocess, tokenizer, id=model_id, arch=arch, precision=precision, device=device
    )
    encoder.spec = parsed.text
    encoder.adapter = os.fspath(adapter) if adapter is not None else None
    return encoder


def canonical_id(parsed: ModelSpec, model_id: str) -> str:
    """The id of a model: a registered name standing for local weights keeps its name, tied to the weights' hash
    (``clipzero-shapes@sha256:...``), so caches never mix two versions; other ids are canonical already."""
    if parsed.name and "@sha256:" in model_id:
        return parsed.name + model_id[model_id.index("@sha256:") :]
    return model_id


def build_model(parsed: ModelSpec, load_weights: bool = True) -> tuple[Any, Any, Any, str, str]:
    """(model, preprocess, tokenizer, arch, id), fp32 on the CPU, for any spec: a transformers model (always with
    its weights), else :func:`build_open_clip`."""
    if parsed.kind != "transformers":
        return build_open_clip(parsed, load_weights)
    from .transformers_model import load_transformers

    return load_transformers(parsed.text, parsed.path, parsed.repo)


def build_open_clip(parsed: ModelSpec, load_weights: bool = True) -> tuple[Any, Any, Any, str, str]:
    """Create the fp32 CPU open_clip model for a parsed spec: (model, preprocess, tokenizer, arch, id)."""
    open_clip = open_clip_module(arch_needs(parsed.arch) if parsed.arch else folder_needs(parsed.path))

    kwargs: dict[str, object] = {}
    if parsed.kind == "pretrained":
        assert parsed.arch and parsed.tag
        name, model_id = parsed.arch, f"{parsed.arch}:{parsed.tag}"
        arch = parsed.arch
        if load_weights:
            cfg = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag)
            kwargs["pretrained"] = str(_pretrained_file(parsed.text, cfg))
            # A file path skips open_clip's per-tag settings: pass them on ourselves.
            for key in ("mean", "std", "interpolation", "resize_mode"):
                if key in cfg:
                    kwargs[f"image_{key}"] = cfg[key]
            if cfg.get("quick_gelu"):
                kwargs["force_quick_gelu"] = True
    elif parsed.kind == "local-file":
        assert parsed.arch and parsed.path
        name, arch = parsed.arch, parsed.arch
        model_id = f"{arch}@sha256:{hub.files_digest(parsed.path)}"
        if load_weights:
            kwargs["pretrained"] = str(parsed.path)
    else:
        folder = parsed.path if parsed.kind == "local-dir" else _hub_snapshot(parsed)
        assert folder is not None
        config = _read_config(folder)
        arch = _matching_arch(config["model_cfg"])
        name = f"local-dir:{folder}"
        if parsed.kind == "hf-hub":
            model_id = f"hf-hub:{parsed.repo}"
        else:
            weights = [p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES]
            model_id = f"{arch}@sha256:{hub.files_digest(folder / HUB_CONFIG, *weights)}"
        kwargs["load_weights"] = load_weights
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, device="cpu", precision="fp32", **kwargs)
    except ClipzeroError:
        raise
    except Exception as exc:
        raise _load_error(parsed, exc) from exc
    try:
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:
        raise ModelUnavailableError(
            f"model {parsed.text!r}: its tokenizer could not be loaded ({type(exc).__name__}: {exc}); it may need "
            "files from the hub that are not cached, or the `transformers` package"
        ) from exc
    return model, preprocess, tokenizer, arch, model_id


def _load_error(parsed: ModelSpec, exc: Exception) -> ModelLoadError:
    text = str(exc)
    if "weights_only" in text or "Unpickl" in type(exc).__name__ or "Unsupported global" in text:
        return ModelLoadError(
            f"model {parsed.text!r}: refusing to unpickle {parsed.path or 'the checkpoint'}: it holds Python objects "
            "beyond tensors, which could run code. Convert it to safetensors, or save only its state_dict."
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    return ModelLoadError(
        f"model {parsed.text!r}: the weights could not be loaded into the architecture: {first[:600]}"
    )


def _read_config(folder: Path) -> dict[str, dict[str, object]]:
    try:
        config = json.loads((folder / HUB_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {folder / HUB_CONFIG}: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ModelLoadError(f"{folder / HUB_CONFIG} has no 'model_cfg' object (open_clip's config format)")
    return config


def _pretrained_file(spec: str, cfg: dict[str, str]) -> Path:
    if cfg.get("file"):
        return Path(cfg["file"])
    if cfg.get("hf_hub"):
        repo, files = hub.weight_candidates(cfg["hf_hub"])
        return hub.require_hub_file(spec, repo, files)
    if cfg.get("url"):
        return hub.require_url_file(spec, cfg["url"])
    raise ModelUnavailableError(f"model {spec!r}: open_clip lists no download location for it")


def _hub_snapshot(parsed: ModelSpec) -> Path:
    assert parsed.repo
    config = hub.require_hub_file(parsed.text, parsed.repo, [HUB_CONFIG])
    hub.require_hub_file(parsed.text, parsed.repo, list(hub.HUB_WEIGHTS))
    text_cfg = _read_config(config.parent)["model_cfg"].get("text_cfg")
    if isinstance(text_cfg, dict) and text_cfg.get("hf_tokenizer_name") and not any(config.parent.glob("tokenizer*")):
        hub.fetch_hub_extras(parsed.repo, config.parent, _TOKENIZER_FILES)
    return config.parent
