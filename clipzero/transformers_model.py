"""The torch side of transformers CLIP-family models (:mod:`clipzero.transformers_family` parses their specs without
importing torch): the model wrapper, its tokenizer and :func:`load_transformers`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError, ModelNotFoundError, ModelUnavailableError
from .transformers_family import FAMILIES, PREFIX, folder_id, model_type, snapshot

__all__ = ["TransformersCLIP", "build_transformers", "load_transformers"]


def load_transformers(spec: str, folder: Path | None, repo: str | None) -> tuple[Any, Any, Any, str, str]:
    """(model, preprocess, tokenizer, arch, id) for a folder or a hub repository (from the cache, else downloaded)."""
    if folder is not None:
        return build_transformers(folder, folder_id(folder))
    assert repo is not None
    snapshot_folder = snapshot(spec, repo)  # the cache names a snapshot folder by its revision
    return build_transformers(snapshot_folder, f"{PREFIX}{repo}@{snapshot_folder.name[:12]}")


class TransformersCLIP(torch.nn.Module):
    """A transformers dual encoder seen the way clipzero sees an open_clip model: ``encode_image``,
    ``encode_text`` (token ids; the attention mask is worked out from them), ``logit_scale``, ``logit_bias`` and
    ``visual.image_size``."""

    def __init__(self, inner: Any, family: str, pad_id: int, eos_id: int | None, image_size: int,
                 use_mask: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.visual = inner.vision_model  # first, so the image tower's parameters are named visual.*
        self.visual.image_size = image_size
        self.inner = inner
        self.family = family
        self.pad_id, self.eos_id = pad_id, eos_id
        self.use_mask = use_mask  # as the family's tokenizer hands the model an attention mask, or not (SigLIP)

    @property
    def logit_scale(self) -> torch.Tensor:  # stored as its log, as in open_clip
        return self.inner.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        return getattr(self.inner, "logit_bias", None)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.family == "siglip2":  # (n, patches, values + mask + 2 shape numbers), as preprocess packs them
            values = pixels.shape[-1] - 3
            return _features(self.inner.get_image_features(
                pixel_values=pixels[..., :values], pixel_attention_mask=pixels[..., values].round().long(),
                spatial_shapes=pixels[:, 0, values + 1 :].float().round().long()))  # fmt: skip
        return _features(self.inner.get_image_features(pixel_values=pixels))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.use_mask:  # SigLIP's own tokenizer: texts padded to the full length, and no mask
            return _features(self.inner.get_text_features(input_ids=ids))
        return _features(self.inner.get_text_features(input_ids=ids, attention_mask=self.mask(ids)))

    def mask(self, ids: torch.Tensor) -> torch.Tensor:
        """1 for the text's tokens, 0 for padding (where padding is the end token itself, up to the first one)."""
        if self.eos_id is not None and self.pad_id == self.eos_id:
            first_end = (ids == self.eos_id).int().argmax(dim=1, keepdim=True)
            return (torch.arange(ids.shape[1], device=ids.device)[None, :] <= first_end).long()
        return (ids != self.pad_id).long()


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings, whether a transformers version returns a tensor or an output object."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise ModelLoadError(f"unexpected features from transformers: {type(output).__name__}")


class _Tokenizer:
    """Texts -> token ids (n, length) the way the family's own processor makes them: padded to the full context
    for SigLIP, to the longest text otherwise; truncated at the context."""

    def __init__(self, tokenizer: Any, context_length: int, full_length: bool) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.full_length = full_length

    def __call__(self, texts: Any, context_length: int | None = None) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        padding = "max_length" if self.full_length else "longest"
        length = context_length or self.context_length
        found = self.tokenizer(texts, padding=padding, truncation=True, max_length=length, return_tensors="pt")
        return found["input_ids"]


def build_transformers(folder: Path, model_id: str) -> tuple[Any, Any, Any, str, str]:
    """(model, preprocess, tokenizer, arch, id) for a transformers folder, fp32 on the CPU.

    Raises:
        ModelNotFoundError: not a family clipzero loads; ModelUnavailableError: transformers is missing, or the
        folder lacks its tokenizer or image processor; ModelLoadError: the weights do not load.
    """
    family = model_type(folder)
    if family not in FAMILIES:
        raise ModelNotFoundError(f"{folder}: model_type {family!r} is not a CLIP-family model clipzero loads "
                                 f"({', '.join(FAMILIES)})")  # fmt: skip
    try:
        import transformers
    except ImportError as exc:
        raise ModelUnavailableError(f"{model_id}: transformers models need the `transformers` package: "
                                    "pip install transformers") from exc  # fmt: skip
    if not any(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").is_file():
        raise ModelLoadError(f"{folder}: no safetensors weights (clipzero does not unpickle .bin checkpoints, "
                             "which could run code): save the model with save_pretrained(safe_serialization=True)")
    loader = getattr(transformers, FAMILIES[family])
    try:
        inner = loader.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
    except Exception as exc:
        raise ModelLoadError(f"{model_id}: the weights could not be loaded: {str(exc).splitlines()[0][:400]}") from exc
    try:
        images = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        words = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise ModelUnavailableError(f"{model_id}: its image processor or tokenizer could not be loaded from {folder} "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from exc  # fmt: skip
    text_config = inner.config.text_config
    positions = int(getattr(text_config, "max_position_embeddings", 77))
    limit = int(getattr(words, "model_max_length", positions) or positions)
    if family == "altclip":  # XLM-R numbers positions from the padding id + 1: two fewer fit
        positions -= 2
    context = min(positions, limit) if family != "chinese_clip" else min(positions, limit, 52)
    pad_id = int(words.pad_token_id if words.pad_token_id is not None else 0)
    eos_id = words.eos_token_id if words.eos_token_id is not None else getattr(text_config, "eos_token_id", None)
    side = _input_side(images, inner)
    use_mask = "attention_mask" in getattr(words, "model_input_names", ["attention_mask"])
    model = TransformersCLIP(inner, family, pad_id, None if eos_id is None else int(eos_id), side, use_mask)

    def preprocess(image: Any) -> torch.Tensor:
        found = images(images=image, return_tensors="pt")
        if family != "siglip2":
            return found["pixel_values"][0]
        # NaFlex: patches, which of them are real, and the patch grid's shape, packed into one tensor per image so
        # that the pipeline can batch them like any other.
        patches, mask = found["pixel_values"][0].float(), found["pixel_attention_mask"][0].float()
        shape = found["spatial_shapes"][0].float().expand(patches.shape[0], 2)
        return torch.cat([patches, mask[:, None], shape], dim=1)

    tokenizer = _Tokenizer(words, context, full_length=family in ("siglip", "siglip2"))
    return model, preprocess, tokenizer, f"transformers/{family}", model_id


def _input_side(processor: Any, inner: Any) -> int:
    if getattr(processor, "max_num_patches", None):  # NaFlex: about this many pixels on a side at most
        return int(processor.max_num_patches**0.5 * processor.patch_size)
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    if isinstance(size, dict):
        for key in ("height", "shortest_edge", "width"):
            if size.get(key):
                return int(size[key])
    return int(getattr(inner.config.vision_config, "image_size", 224))
