"""Reconstruction quality of a tokenizer next to JPEG and WebP at the same bits per pixel.

    python benchmarks/default_model_quality.py --model /work/runs/default/model --images /work/data/heldout

Each image is resized (shorter side) and centre-cropped to --size (the evaluation protocol). The
tokenizer's rate is its token bits per pixel (C / f**2); JPEG and WebP get, per image, the highest
quality whose file is no larger than that rate. Prints mean PSNR / SSIM (scikit-image's numbers,
`wetok.metrics`) and the mean rate for each codec; this table is the default model's model card.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def encode_at_most(image: np.ndarray, fmt: str, max_bits: float) -> tuple[np.ndarray, float]:
    """The highest-quality `fmt` ("JPEG" or "WEBP") encoding of uint8 (H, W, 3) using at most
    `max_bits` bits (quality 1 when none fits): its decoded pixels and bits per pixel."""
    def encode(quality: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, quality=quality)
        return buffer.getvalue()

    lo, hi, best = 1, 100, encode(1)
    while lo <= hi:  # file size grows with quality (almost always): binary search
        mid = (lo + hi) // 2
        data = encode(mid)
        if len(data) * 8 <= max_bits:
            best, lo = data, mid + 1
        else:
            hi = mid - 1
    decoded = np.asarray(Image.open(io.BytesIO(best)).convert("RGB"))
    return decoded, len(best) * 8 / (image.shape[0] * image.shape[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory, .ckpt or preset (default: the bundled model)")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-images", type=int, default=1000)
    args = parser.parse_args()

    import wetok
    from wetok.data import evaluation_images
    from wetok.images import to_uint8
    from wetok.metrics import psnr, ssim

    model = wetok.load(args.model)
    images = evaluation_images(args.images, args.size, args.max_images)
    bpp = model.bits_per_pixel(args.size, args.size)
    with torch.no_grad():
        recon = torch.cat([model.reconstruct(images[i : i + 8], generator=torch.Generator().manual_seed(0))
                           for i in range(0, len(images), 8)])
    reference = to_uint8(images)
    rows = {f"wetok ({model.config.describe().split(',')[0]}, {model.bits_per_token} bits/position)":
            (reference, to_uint8(recon), [bpp] * len(images))}
    for fmt in ("JPEG", "WEBP"):
        decoded, rates = zip(*(encode_at_most(im, fmt, bpp * args.size * args.size) for im in reference))
        rows[fmt] = (reference, np.stack(decoded), list(rates))
    print(f"{len(images)} images from {args.images}, {args.size}x{args.size} centre crops")
    print("| codec | bits per pixel | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for name, (ref, test, rates) in rows.items():
        print(f"| {name} | {np.mean(rates):.3f} | {psnr(ref, test).mean():.2f} | {ssim(ref, test).mean():.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
