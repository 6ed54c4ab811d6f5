"""Tiled versus untiled encoding and decoding: peak memory, time, and how close the results are.

    .venv/bin/python benchmarks/tiling.py                               # fixture tiny_d16, 1024 px
    .venv/bin/python benchmarks/tiling.py --model runs/default/model --threads 1   # a trained model folder
    .venv/bin/python benchmarks/tiling.py --model imagenet-d16 --size 4096 --no-untiled --device cuda
    .venv/bin/python benchmarks/tiling.py --model imagenet-d16 --probe 1    # memory of one 512 px window

The picture is a 2x2 mosaic of scikit-image's bundled photos (astronaut, coffee, chelsea,
rocket), so the windows see different content. `--model` is a fixture case (tiny_d16,
tiny_d8_g8, tiny_gd_d32: the reference checkpoints in ../shared, EMA weights), a model file or
folder (`wetok.load`, e.g. trained weights), or a preset name (its architecture with random
weights: no released weights are available here). The output says which. `--stats` picks the
tiled normalisation modes to compare: image (whole-image statistics measured window by window)
and window (each window on its own). Reports, for each way: peak resident memory of this process (CPU; reset before each
run through /proc/self/clear_refs) or peak CUDA memory, wall time, PSNR of the reconstruction to
the original; then the PSNR difference, the PSNR between the two reconstructions and the share
of equal tokens.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import wetok
from wetok.images import to_tensor
from wetok.tiling import STATS_MODES, TileSpec, decode_tiled, encode_tiled
from wetok.tokenizer import Tokenizer

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"
FIXTURES = ("tiny_d16", "tiny_d8_g8", "tiny_gd_d32")


def mosaic(size: int) -> np.ndarray:
    """A size x size uint8 RGB mosaic of four bundled photos."""
    from skimage import data

    half = size // 2
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = [np.asarray(Image.fromarray(p).resize((half, half), Image.BICUBIC)) for p in photos]
    return np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)


def load_model(name: str, device: str) -> tuple[Tokenizer, str]:
    if name in FIXTURES:
        if not (REFERENCE / f"{name}.ckpt").is_file():
            raise SystemExit(f"fixture checkpoint {REFERENCE / name}.ckpt not found")
        model = wetok.load(REFERENCE / f"{name}.ckpt", config=REFERENCE / f"{name}.yaml", device=device)
        return model, f"{name}: fixture checkpoint (random weights of the original code, EMA)"
    if Path(name).exists():
        return wetok.load(name, device=device), f"{name} (trained weights)"
    config = wetok.get_preset(name)
    torch.manual_seed(0)
    model = Tokenizer(config).to(device).eval()
    return model, f"{name} architecture with RANDOM weights (released weights are not available here)"


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)


def peak_gib(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def run(model: Tokenizer, image: torch.Tensor, spec: TileSpec | None, device: str, seed: int) -> dict:
    reset_peak(device)
    start = time.perf_counter()
    with torch.no_grad():
        if spec is None:
            tokens = model.encode(image.to(device)).cpu()
        else:
            tokens = encode_tiled(model, image, spec)
        noise = None
        if model.config.generative:
            noise = torch.randn((1, model.config.latent_channels, *tokens.shape[1:3]), generator=torch.Generator().manual_seed(seed))
        if spec is None:
            recon = model.decode(tokens, noise=noise).float().cpu()
        else:
            recon = decode_tiled(model, tokens, spec, noise=noise)
    return {"tokens": tokens, "recon": recon, "seconds": time.perf_counter() - start, "peak": peak_gib(device)}


def probe(model: Tokenizer, what: str, batch: int, tile: int, device: str) -> None:
    """Peak memory of one batch of windows through the encoder, then the decoder."""
    f = model.downsample
    tile -= tile % f
    print(f"model: {what}; {model.config.describe()}")
    print(f"probe: a batch of {batch} window(s) of {tile}x{tile} pixels; device {device}")
    reset_peak(device)
    print(f"after loading the model         peak {peak_gib(device):6.2f} GiB")
    windows = torch.rand(batch, 3, tile, tile, device=device) * 2 - 1
    with torch.no_grad():
        reset_peak(device)
        start = time.perf_counter()
        codes = model.quantizer(model.encode_latent(windows)).quantized
        print(f"encoder                         peak {peak_gib(device):6.2f} GiB  {time.perf_counter() - start:7.1f} s")
        noise = torch.randn_like(codes) if model.config.generative else None
        reset_peak(device)
        start = time.perf_counter()
        model.decode_codes(codes, noise=noise)
        print(f"decoder                         peak {peak_gib(device):6.2f} GiB  {time.perf_counter() - start:7.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_d16",
                        help=f"fixture case ({', '.join(FIXTURES)}), model file or folder, or preset name (random weights)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--stats", choices=STATS_MODES, nargs="+", default=list(STATS_MODES),
                        help="tiled normalisation modes to compare (default: image window)")
    parser.add_argument("--no-untiled", action="store_true", help="skip the untiled run (too large to fit)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--probe", type=int, default=0, metavar="B",
                        help="only measure peak memory of the encoder and decoder on a batch of B windows of --tile "
                        "pixels: the most tiled processing holds at once, for any image size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, what = load_model(args.model, args.device)
    if args.probe:
        probe(model, what, args.probe, args.tile, args.device)
        return
    f = model.downsample
    size = args.size - args.size % f
    image = to_tensor(mosaic(size))
    print(f"model: {what}; {model.config.describe()}")
    print(f"image: {size}x{size} mosaic of scikit-image photos; tile {args.tile}px, overlap {args.overlap}px; device {args.device}")
    # Tiled runs first: memory an untiled run frees may stay mapped and raise later peaks.
    tiled = [(stats, run(model, image, TileSpec(args.tile, args.overlap, stats), args.device, 0)) for stats in args.stats]
    base = run(model, image, None, args.device, 0) if not args.no_untiled else None
    if base is not None:
        print(f"untiled                  peak {base['peak']:6.2f} GiB  {base['seconds']:7.1f} s  PSNR to original {psnr(base['recon'], image):6.2f} dB")
    for stats, res in tiled:
        line = (
            f"tiled, {stats + ' stats':15s}   peak {res['peak']:6.2f} GiB  {res['seconds']:7.1f} s  "
            f"PSNR to original {psnr(res['recon'], image):6.2f} dB"
        )
        if base is not None:
            diff = psnr(res["recon"], image) - psnr(base["recon"], image)
            same = (res["tokens"] == base["tokens"]).float().mean().item()
            line += (
                f"  difference {diff:+.3f} dB  PSNR(untiled, tiled) {psnr(res['recon'], base['recon']):6.2f} dB  "
                f"equal tokens {same:6.1%}"
            )
        print(line, flush=True)

if __name__ == "__main__":
    main()
