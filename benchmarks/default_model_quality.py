"""Reconstruction quality of a tokenizer next to JPEG and WebP at the same bits per pixel.

    python benchmarks/default_model_quality.py --model /work/runs/default/model --images /work/data/heldout

Each image is resized (shorter side) and centre-cropped to --size (the evaluation protocol). The
tokenizer's rate is its token bits per pixel (C / f**2); JPEG and WebP get, per image, the highest
quality whose file is no larger than that rate. Prints mean PSNR / SSIM (scikit-image's numbers,
`wetok.metrics`) and the mean rate for each codec; this table is the default model's model card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory, .ckpt or preset (default: the bundled model)")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--max-images", type=int, default=1000)
    args = parser.parse_args()

    import wetok
    from wetok.baselines import compress_to_bpp
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
    for codec in ("jpeg", "webp"):
        results = [compress_to_bpp(im, codec, bpp) for im in reference]
        rows[codec.upper()] = (reference, np.stack([r.image for r in results]), [r.bpp for r in results])
    print(f"{len(images)} images from {args.images}, {args.size}x{args.size} centre crops")
    print("| codec | bits per pixel | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for name, (ref, test, rates) in rows.items():
        print(f"| {name} | {np.mean(rates):.3f} | {psnr(ref, test).mean():.2f} | {ssim(ref, test).mean():.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
