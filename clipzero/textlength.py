"""Text encoding at the length a batch needs, with the same embeddings as the full context.

CLIP's text towers take a fixed context (77 tokens), and most prompts use a dozen. In a tower whose attention is
causal (each position sees only those before it) and that pools at a position inside the text (the end-of-text
token, or the first), the positions after a batch's longest text change nothing that is pooled: cutting every
batch to its longest text gives the same embeddings at a fraction of the cost. A tower that masks padding from
attention gives the same with any pooling inside the text.

:func:`trimmed_text_encoder` builds such an encoder for the tower kinds where that holds: open_clip's built-in
text transformer (in :class:`open_clip.CLIP`) and its ``TextTransformer`` (in ``CustomTextCLIP``), causal or
padding-masked, pooling at ``argmax``/``eos``/``first``. Any other tower (Hugging Face towers, pooling at the
last position, a class token) keeps the full context. The encoder is then checked once against the model's own
``encode_text`` on probe texts of different lengths and kept only if every difference is within the precision's
noise, so a tower that does not behave as its attributes say falls back to the full context too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["TextEncode", "needed_length", "pad_id_of", "probe_tolerance", "trimmed_text_encoder"]

#: tokens (b, ctx) and the length to run at (None: the longest text's) -> features (b, dim).
TextEncode = Callable[..., torch.Tensor]

#: Probe texts of several lengths: the check compares each against the full-context encoding.
_PROBES = ["a", "a photo of a red circle.", "a close-up photo of two small blue stars on a striped background, "
           "drawn in thin outlines, next to a large green hexagon and a pink heart"]  # fmt: skip
_POOLS_INSIDE = ("argmax", "eos", "first")


def needed_length(tokens: torch.Tensor, pad_id: int) -> int:
    """One past the last non-padding position of any row of ``tokens`` (b, ctx); at least 1."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    return int(used.max().item()) + 1 if used.numel() else 1


def pad_id_of(tokenizer: Callable[..., torch.Tensor]) -> int:
    """The token id that fills a short text up to the context (open_clip's tokenizer: 0)."""
    empty = tokenizer([""])[0]
    return int(empty[-1].item()) if len(empty) > 2 else 0


def probe_tolerance(dtype: torch.dtype) -> float:
    """How far a trimmed embedding (unit length) may differ from the full-context one: 1e-5 at fp32; at 16-bit
    precisions the kernels' own rounding for another sequence length."""
    return 1e-5 if dtype == torch.float32 else 2e-2


def _pooled(tower: Any, x: torch.Tensor, tokens: torch.Tensor, pool: str, eos: int | None) -> torch.Tensor:
    from open_clip.transformer import text_global_pool

    x = text_global_pool(x, tokens, pool, eos_token_id=eos)
    projection = tower.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _builtin(model: Any, pad_id: int) -> TextEncode | None:
    """open_clip.CLIP's own text tower (attributes on the model itself), causal, pooling inside the text."""
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask", "text_projection")
    if not all(hasattr(model, name) for name in needed) or model.attn_mask is None:
        return None
    pool = getattr(model, "text_pool_type", "argmax")
    if pool not in _POOLS_INSIDE:
        return None
    eos = getattr(model, "text_eos_id", None)

    def encode(tokens: torch.Tensor, length: int | None = None) -> torch.Tensor:
        length = length or needed_length(tokens, pad_id)
        tokens = tokens[:, :length]
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        return _pooled(model, model.ln_final(x), tokens, pool, eos)

    return encode


def _text_transformer(model: Any, pad_id: int) -> TextEncode | None:
    """open_clip's TextTransformer (CustomTextCLIP.text): causal or padding-masked, no class token."""
    tower = getattr(model, "text", None)
    if tower is None or type(tower).__name__ != "TextTransformer" or getattr(tower, "cls_emb", None) is not None:
        return None
    pool = getattr(tower, "pool_type", "argmax")
    padded = bool(getattr(tower, "use_pad_mask", False))
    if pool not in _POOLS_INSIDE or (tower.attn_mask is None and not padded):
        return None
    if padded and getattr(tower, "pad_id", pad_id) != pad_id:
        return None
    eos = getattr(tower, "eos_id", None)

    def encode(tokens: torch.Tensor, length: int | None = None) -> torch.Tensor:
        length = length or needed_length(tokens, pad_id)
        tokens = tokens[:, :length]
        if padded:  # the tower slices its masks to the sequence itself
            return tower(tokens)
        cast = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(tokens).to(cast) + tower.positional_embedding[:length].to(cast)
        x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
        return _pooled(tower, tower.ln_final(x), tokens, pool, eos)

    return encode


def trimmed_text_encoder(model: Any, tokenizer: Callable[..., torch.Tensor], device: torch.device,
                         pad_id: int | None = None) -> TextEncode | None:  # fmt: skip
    """An ``encode_text`` that cuts each batch to the length it needs, or None when this tower must keep its full
    context (a kind it cannot be shown exact for, or the probe found a difference).

    Args:
        model: the open_clip model (CLIP or CustomTextCLIP), in eval mode.
        tokenizer: its tokenizer (texts -> (n, ctx) token ids).
        device: where the model runs.
        pad_id: the tokenizer's padding id, when the caller knows it (else :func:`pad_id_of`).
    """
    if getattr(tokenizer, "tokenizer", None) is not None:  # a Hugging Face tokenizer: an HF tower
        return None
    pad_id = pad_id_of(tokenizer) if pad_id is None else pad_id
    encode = _builtin(model, pad_id) or _text_transformer(model, pad_id)
    if encode is None:
        return None
    params = [p for p in model.parameters() if p.is_floating_point()]
    tolerance = probe_tolerance(params[0].dtype if params else torch.float32)
    try:
        with torch.inference_mode():
            tokens = tokenizer(_PROBES).to(device)
            full = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
            for row in range(len(_PROBES)):  # each alone, at its own length, and all together
                one = torch.nn.functional.normalize(encode(tokens[row : row + 1]).float(), dim=-1)
                if (one - full[row : row + 1]).abs().max().item() > tolerance:
                    return None
            together = torch.nn.functional.normalize(encode(tokens).float(), dim=-1)
            if (together - full).abs().max().item() > tolerance:
                return None
    except Exception:  # any failure of the trimmed path means the full context, which is always right
        return None
    return encode
