"""The README's main job: tokenize the bundled photo and reconstruct it.

Writes OUT_DIR/reconstruction.png and OUT_DIR/comparison.png (original | reconstruction) and
prints the token grid, the rate and the PSNR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import wetok
from wetok.images import read_image, resize_shorter_center_crop, to_tensor, to_uint8
from wetok.metrics import psnr

ASSET = Path(wetok.__file__).parent / "assets" / "chelsea.png"
FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"


def pick_model() -> tuple[wetok.Tokenizer, str, bool]:
    """(model, description, trained?)."""
    if wetok.default_model_available():
        return wetok.load(), "the bundled default model", True
    if (FIXTURE / "tiny_d16.ckpt").is_file():
        model = wetok.load(FIXTURE / "tiny_d16.ckpt", config=FIXTURE / "tiny_d16.yaml")
        return model, "the reference fixture tiny_d16 (random weights from the original implementation)", False
    torch.manual_seed(0)
    config = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1, latent_channels=32, groups=4)
    return wetok.Tokenizer(config).eval(), "an untrained d8 model with random weights", False


def save_png(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("out/demo"), help="output directory (default out/demo)")
    parser.add_argument("--size", type=int, default=256, help="centre crop size (default 256)")
    args = parser.parse_args(argv)

    model, description, trained = pick_model()
    if not trained:
        print(
            f"note: this wetok build has no default model ({wetok.weights.DEFAULT_MODEL_DIR} is missing); this run "
            f"shows the whole pipeline with {description}, so the reconstruction will not resemble the photo.",
            file=sys.stderr,
        )
    original = resize_shorter_center_crop(np.asarray(read_image(ASSET)), args.size)
    images = to_tensor(original)
    tokens = model.encode(images)
    recon = to_uint8(model.decode(tokens, generator=torch.Generator().manual_seed(0)))[0]
    quality = float(psnr(original[None], recon[None])[0])

    args.output.mkdir(parents=True, exist_ok=True)
    save_png(Image.fromarray(recon), args.output / "reconstruction.png")
    save_png(Image.fromarray(np.concatenate([original, recon], axis=1)), args.output / "comparison.png")
    h, w = tokens.shape[1:3]
    print(f"model: {description}: {model.config.describe()}")
    print(
        f"image {args.size}x{args.size} -> tokens {tuple(tokens.shape)} ({h}x{w} positions x {model.groups} groups "
        f"of {model.bits_per_group} bits) = {model.bits_per_pixel(args.size, args.size):.4f} bits/pixel, "
        f"compression {model.compression_ratio(args.size, args.size):.0f}x"
    )
    print(f"PSNR {quality:.2f} dB; wrote {args.output / 'reconstruction.png'} and {args.output / 'comparison.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
