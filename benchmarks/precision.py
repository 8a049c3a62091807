"""Image-encoding throughput and embedding drift by precision, against fp32 measured in the same run.

Usage: python benchmarks/precision.py [--arch ViT-B-32] [--batch 32] [--batches 3]

Random weights are fine for speed; drift is the minimum cosine similarity between an embedding computed at a
precision and the fp32 embedding of the same input (1.0 = identical), over image and text embeddings. Also
measures bf16 autocast over fp32 weights, the path clipzero does not take, to show why.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from clipzero.encoder import Encoder


def build(arch: str, precision: str) -> Encoder:
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch)
    return Encoder.from_open_clip(
        model, preprocess, open_clip.get_tokenizer(arch), id=f"{arch}:random", precision=precision, device="cpu"
    )


def rate(fn: Callable[[], object], images: int, batches: int) -> float:
    fn()  # warm-up: allocator, oneDNN kernels
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    return images * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    generator = torch.Generator().manual_seed(1)
    reference = build(args.arch, "fp32")
    side = reference.model.visual.image_size
    side = side[0] if isinstance(side, tuple) else side
    pixels = torch.randn(args.batch, 3, side, side, generator=generator)
    texts = [f"a photo of a number {i} thing." for i in range(64)]
    ref_images = reference.encode_pixels(pixels)
    ref_texts = reference.encode_texts(texts)
    base = rate(lambda: reference.encode_pixels(pixels), args.batch, args.batches)
    print(f"{args.arch}, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'precision':<16} {'images/s':>9} {'vs fp32':>8} {'min cos (images)':>17} {'min cos (texts)':>16}")
    print(f"{'fp32':<16} {base:9.1f} {1.0:8.2f} {1.0:17.5f} {1.0:16.5f}")
    for precision in ("bf16", "int8"):
        encoder = build(args.arch, precision)
        speed = rate(lambda enc=encoder: enc.encode_pixels(pixels), args.batch, args.batches)
        drift_i = float((encoder.encode_pixels(pixels) * ref_images).sum(1).min())
        drift_t = float((encoder.encode_texts(texts) * ref_texts).sum(1).min())
        print(f"{precision:<16} {speed:9.1f} {speed / base:8.2f} {drift_i:17.5f} {drift_t:16.5f}")
        del encoder

    def autocast() -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reference.encode_pixels(pixels)

    speed = rate(autocast, args.batch, args.batches)
    drift = float((autocast() * ref_images).sum(1).min())
    print(f"{'bf16 autocast':<16} {speed:9.1f} {speed / base:8.2f} {drift:17.5f} {'-':>16}  (not used)")


if __name__ == "__main__":
    main()
