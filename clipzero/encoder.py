"""The Encoder: one loaded CLIP model, turning images and texts into L2-normalised float32 vectors."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import check_precision as check_device_precision
from .errors import ConfigError
from .images import Decoder, ImageSource, decode

__all__ = [
    "Encoder",
    "apply_precision",
    "bounded_text",
    "check_precision",
    "default_precision",
    "native_bf16",
    "resolve_device",
]

#: Runs of this many non-space characters or more are split before tokenizing (see :func:`bounded_text`).
_LONG_RUN = re.compile(r"\S{64,}")
_UNSET = object()
#: The tokenizer's word cache is reset when it holds more words than this (it grows with every new word).
_TOKENIZER_CACHE_WORDS = 20_000


def bounded_text(text: str, context_length: int) -> str:
    """What of ``text`` the tokenizer gets: cheap to tokenize whatever a client sends.

    CLIP's byte-pair encoder costs time quadratic in a word's length (a 2,000-character word took 0.1-0.6 s) and
    keeps only the first ``context_length`` tokens anyway. So the text is cut to 12 characters per context token
    (no token is that long in practice), and runs of 64 or more non-space characters are split every 64, which
    changes nothing a real word or sentence tokenizes to within the context. Tokenizing is then linear.
    """
    text = text[: context_length * 12]
    return _LONG_RUN.sub(lambda m: " ".join(m[0][i : i + 64] for i in range(0, len(m[0]), 64)), text)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} was asked for but Apple MPS is not available here; use --device cpu")
    return resolved


def default_precision(device: torch.device) -> str:
    """The fast precision for a device: fp16 on CUDA, bf16 on CPUs with native bf16 (AVX-512 BF16 or AMX),
    else fp32. On the 2-core development CPU bf16 weights encoded ViT-B-32 about 2.1x as fast as fp32."""
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu":
        return "bf16" if native_bf16() else "fp32"
    return "fp32"


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, about 10x slower
    than fp32."""
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())  # fmt: skip


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run, before any model loads (see :func:`clipzero.config.check_precision`).

    Raises:
        ConfigError: an unknown precision, fp16 on a CPU, or int8 off the CPU.
    """
    check_device_precision(precision, device.type)


def apply_precision(model: torch.nn.Module, precision: str, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` and cast it for inference.

    bf16 and fp16 cast the weights themselves (on the CPU this ran ViT-B-32 about twice as fast as fp32, where
    bf16 autocast was slower than fp32); int8 quantizes every ``nn.Linear`` dynamically (weights int8, activations
    quantized per batch), which runs on the CPU only.
    """
    check_precision(precision, device)
    if precision == "fp32":
        return model.to(device=device, dtype=torch.float32)
    if precision == "bf16":
        return model.to(device=device, dtype=torch.bfloat16)
    if precision == "fp16":
        return model.to(device=device, dtype=torch.float16)
    if precision == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch announces a future move of eager quantization
            from torch.ao.quantization import quantize_dynamic

            quantized = quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8)
        # open_clip's text tower picks its compute dtype from an MLP weight, which quantized Linear layers expose
        # as a method; activations stay fp32 under dynamic quantization, so say so.
        for module in quantized.modules():
            if hasattr(module, "get_weight_dtype"):
                module.get_weight_dtype = lambda: torch.float32
        return quantized
    raise AssertionError(precision)  # check_precision refused it



#: Rows every text forward pass holds at least (see :meth:`Encoder.encode_texts`).
MIN_ROWS = 8
#: Texts run at their own length rounded up to a multiple of this many tokens.
TEXT_LENGTH_STEP = 8


def text_lengths(tokens: torch.Tensor, pad_id: int, step: int) -> torch.Tensor:
    """Each row's length: one past its last non-padding token, rounded up to a multiple of ``step`` (at most the
    context, at least ``step``)."""
    positions = torch.arange(1, tokens.shape[1] + 1)
    used = torch.where(tokens != pad_id, positions, torch.zeros_like(positions)).amax(dim=1)
    return ((used + step - 1) // step * step).clamp(min=step, max=tokens.shape[1])


def _groups(lengths: torch.Tensor, size: int) -> list[tuple[torch.Tensor, int]]:
    """Row indices by length (shortest first, input order within a length), at most ``size`` rows a group."""
    order = torch.argsort(lengths, stable=True)
    groups: list[tuple[torch.Tensor, int]] = []
    first = 0
    while first < len(order):
        length = int(lengths[order[first]])
        last = first + 1
        while last < len(order) and last - first < size and int(lengths[order[last]]) == length:
            last += 1
        groups.append((order[first:last], length))
        first = last
    return groups


def _padded(batch: torch.Tensor, rows: int) -> torch.Tensor:
    """``batch`` with copies of its first row appended up to ``rows`` rows (the extra outputs are dropped)."""
    missing = rows - batch.shape[0]
    return batch if missing <= 0 else torch.cat([batch, batch[:1].expand(missing, *batch.shape[1:])])


class Encoder:
    """A loaded CLIP model with its preprocessing and tokenizer.

    Build one with :func:`clipzero.load_model`, or wrap an open_clip model you already have with
    :meth:`from_open_clip`.

    Attributes:
        id: the canonical model string (architecture and weights; precision does not change it).
        spec: the model spec it was loaded from (what to pass to load_model to get it again).
        arch: the open_clip architecture name, or ``custom``.
        precision: fp32, bf16, fp16 or int8.
        device: where the model runs.
        embed_dim: the length of every embedding.
        context_length: the text tower's context in tokens.
        model: the underlying open_clip model, in eval mode.
        preprocess: PIL image -> tensor (3, H, W).
        tokenizer: list of texts -> int tensor (n, context_length).
        texts_encoded, images_encoded: running counts of what this encoder has encoded.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        *,
        id: str,
        arch: str = "custom",
        precision: str = "fp32",
        device: torch.device | str = "cpu",
    ) -> None:
        self.model: Any = model.eval()  # open_clip CLIP, CustomTextCLIP or a quantized copy
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.id = id
        self.arch = arch
        self.precision = precision
        self.device = torch.device(device)
        self.spec = id  # the spec it was loaded from; load_model sets it
        self.adapter: str | None = None  # the LoRA adapter folder merged in, if any; load_model sets it
        self.texts_encoded = 0
        self.images_encoded = 0
        self._trimmed: object = _UNSET  # the length-trimmed text encoder, decided on the first encode_texts
        self._pad_id = 0
        params = [p for p in model.parameters() if p.is_floating_point()]
        self._dtype = params[0].dtype if params else torch.float32
        context: Any = getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77)
        self.context_length = int(context)
        self.embed_dim = int(self._probe_dim())
        size: Any = getattr(getattr(model, "visual", None), "image_size", None) or 224
        side = int(max(size) if isinstance(size, (tuple, list)) else size)
        #: JPEGs decode at a reduced scale still at least the model's input side (see :mod:`clipzero.pipeline`).
        self.draft_size = (side, side)

    @classmethod
    def from_open_clip(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        *,
        id: str,
        precision: str = "fp32",
        device: str = "cpu",
        arch: str = "custom",
    ) -> Encoder:
        """Wrap an open_clip model built elsewhere (fp32, on the CPU), applying ``precision`` and ``device``."""
        resolved = resolve_device(device)
        return cls(
            apply_precision(model, precision, resolved),
            preprocess,
            tokenizer,
            id=id,
            arch=arch,
            precision=precision,
            device=resolved,
        )

    def _probe_dim(self) -> int:
        with torch.inference_mode():
            tokens = self.tokenizer(["a"]).to(self.device)
            return int(self.model.encode_text(tokens).shape[-1])

    # -- scoring constants -------------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> float:
        """The learned temperature, exponentiated: logits = logit_scale * cosine (+ logit_bias)."""
        scale = getattr(self.model, "logit_scale", None)
        return float(torch.as_tensor(scale).float().exp().item()) if scale is not None else 100.0

    @property
    def logit_bias(self) -> float | None:
        """SigLIP-family models have a bias and score each label with a sigmoid; CLIP models have None."""
        bias = getattr(self.model, "logit_bias", None)
        return float(torch.as_tensor(bias).float().item()) if bias is not None else None

    # -- encoding ----------------------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` needs, start and end markers included (more than ``context_length`` is truncated)."""
        inner: Any = getattr(self.tokenizer, "tokenizer", None)  # Hugging Face tokenizers wrapped by open_clip
        bounded = bounded_text(text, self.context_length)
        cut = self.context_length + 1 if len(bounded) < len(text) else 0  # cut text is over the context
        if hasattr(self.tokenizer, "encode"):
            count = len(self.tokenizer.encode(bounded)) + 2
            self._trim_tokenizer_cache()
            return max(count, cut)
        if inner is not None:
            return max(len(inner(bounded)["input_ids"]), cut)
        return cut

    def _trim_tokenizer_cache(self) -> None:
        cache = getattr(self.tokenizer, "cache", None)  # open_clip's SimpleTokenizer: word -> BPE, never evicted
        if isinstance(cache, dict) and len(cache) > _TOKENIZER_CACHE_WORDS:
            special = {k: v for k, v in cache.items() if k.startswith("<") and k.endswith(">")}
            cache.clear()
            cache.update(special)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts. A text's vector is a function of the text alone, not of the batch it came in.

        Each text runs at its own length rounded up to a multiple of :data:`TEXT_LENGTH_STEP` tokens, not the whole
        context, when the text tower allows it with the same result (:mod:`clipzero.textlength`); texts of one
        length run together. Every forward pass holds at least :data:`MIN_ROWS` rows (short batches are padded
        with a copy of a row): with fewer, the CPU's matrix kernels take another path that rounds differently, and
        the same text alone and inside a batch gave vectors up to 1e-3 apart at bf16. At ``int8`` each text runs
        alone, as its activations are quantized with one scale per pass.

        Args:
            texts: the texts; longer ones are truncated to the model's context.
            batch_size: texts per forward pass.

        Returns:
            float32 array (len(texts), embed_dim), each row L2-normalised, in the order of ``texts``.
        """
        if not len(texts):
            return np.zeros((0, self.embed_dim), np.float32)
        encode = self._text_encoder()
        alone = self.precision == "int8"
        out = np.empty((len(texts), self.embed_dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), 4 * batch_size):  # tokenize a few batches at a time
                chunk = [bounded_text(t, self.context_length) for t in texts[start : start + 4 * batch_size]]
                tokens = self.tokenizer(chunk)  # (b, ctx)
                lengths = text_lengths(tokens, self._pad_id, TEXT_LENGTH_STEP) if encode is not None else (
                    torch.full((len(chunk),), tokens.shape[1]))  # fmt: skip
                for rows, length in _groups(lengths, 1 if alone else batch_size):
                    batch = _padded(tokens[rows, :length], 1 if alone else MIN_ROWS).to(self.device)
                    vectors = encode(batch, length) if encode is not None else self.model.encode_text(batch)
                    out[(start + rows).numpy()] = self._normalise(vectors[: len(rows)])
        self._trim_tokenizer_cache()
        self.texts_encoded += len(texts)
        return out

    def _text_encoder(self) -> Callable[..., torch.Tensor] | None:
        """The length-trimmed text encoder when this tower allows it exactly (checked once), else None."""
        if self._trimmed is _UNSET:
            from .textlength import pad_id_of, trimmed_text_encoder

            self._pad_id = pad_id_of(self.tokenizer)
            self._trimmed = trimmed_text_encoder(self.model, self.tokenizer, self.device, self._pad_id)
        return self._trimmed  # type: ignore[return-value]

    @property
    def trims_text(self) -> bool:
        """True when texts are encoded at the length they need (see :mod:`clipzero.textlength`)."""
        return self._text_encoder() is not None

    def preprocess_images(self, images: Sequence[ImageSource]) -> torch.Tensor:
        """Load and preprocess images into one batch tensor (n, 3, H, W); raises ImageError on a bad image."""
        decoder = Decoder.for_encoder(self)
        return torch.stack([decode(image, decoder) for image in images])

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed already preprocessed images (n, 3, H, W) -> float32 (n, embed_dim), L2-normalised.

        An image's vector does not depend on its batch: at 16-bit precisions a lone image runs beside a copy of
        itself (a single row takes kernels that round differently); at ``int8`` each image runs alone (its
        activations are quantized with one scale per pass). At fp32 a lone image differs from the same image in a
        batch by under 1e-7.
        """
        count = int(pixels.shape[0])
        if self.precision == "int8" and count > 1:
            return np.concatenate([self.encode_pixels(pixels[i : i + 1]) for i in range(count)])
        rows = 2 if self._dtype in (torch.bfloat16, torch.float16) else 1
        with torch.inference_mode():
            features = self.model.encode_image(_padded(pixels, rows).to(self.device, dtype=self._dtype))
        self.images_encoded += count
        return self._normalise(features[:count])

    def encode_images(self, images: Sequence[ImageSource], batch_size: int = 32) -> np.ndarray:
        """Embed images given as paths, bytes or PIL images.

        Args:
            images: the images.
            batch_size: images per forward pass.

        Returns:
            float32 array (len(images), embed_dim), each row L2-normalised.

        Raises:
            ImageError: an image cannot be read (the error names it).
        """
        chunks = [
            self.encode_pixels(self.preprocess_images(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    @staticmethod
    def _normalise(features: torch.Tensor) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"Encoder(id={self.id!r}, precision={self.precision!r}, device={str(self.device)!r}, dim={self.embed_dim})"
        )
