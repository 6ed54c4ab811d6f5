"""Tiled versus untiled encoding and decoding: peak memory, time, and how close the results are.

    .venv/bin/python benchmarks/tiling.py                               # fixture tiny_d16, 1024 px
    .venv/bin/python benchmarks/tiling.py --model runs/default/model --threads 1   # a trained model folder
    .venv/bin/python benchmarks/tiling.py --model default --size 4096 --no-untiled --threads 2
    .venv/bin/python benchmarks/tiling.py --model default --size 2048 --no-untiled --rerun   # and as before resuming
    .venv/bin/python benchmarks/tiling.py --model imagenet-d16 --size 4096 --no-untiled --device cuda
    .venv/bin/python benchmarks/tiling.py --model imagenet-d16 --probe 1    # memory of one 512 px window

The picture is a 2x2 mosaic of scikit-image's bundled photos (astronaut, coffee, chelsea,
rocket), so the windows see different content. `--model` is `default` (the bundled default
model, trained weights), a fixture case (tiny_d16, tiny_d8_g8, tiny_gd_d32: the reference
checkpoints in ../shared, EMA weights), a model file or folder (`wetok.load`, e.g. trained
weights), or a preset name (its architecture with random weights: no released weights are
available here). The output says which. `--stats` picks the tiled normalisation modes to
compare: image (whole-image statistics measured window by window, each pass resuming where the
window's last one stopped; `--cache-bytes` of kept activations in memory, the rest on disk) and
window (each window on its own); `--rerun` adds whole-image statistics with every pass rerun
from the input (tiling before passes resumed: slow) and checks the two give identical bits.

Reports, for each way: encode and decode wall time and peak memory (resident peak of this
process on the CPU, reset before each through /proc/self/clear_refs; peak allocated on CUDA),
PSNR of the reconstruction to the original; then the PSNR difference, the PSNR between the two
reconstructions and the share of equal tokens; and the time of whole-image over per-window
statistics.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from wetok.errors import WetokError
from wetok.images import to_tensor
from wetok.nn.encoder import run_stages
from wetok.tiling import DEFAULT_CACHE_BYTES, STATS_MODES, ActivationCache, TileSpec, decode_tiled, encode_tiled
from wetok.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import NAMES, load_model  # noqa: E402
from timing import cpu_description, peak_memory_gib, reset_peak_memory  # noqa: E402


def mosaic(size: int) -> np.ndarray:
    """A size x size uint8 RGB mosaic of four bundled photos."""
    from skimage import data

    half = size // 2
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    tiles = [np.asarray(Image.fromarray(p).resize((half, half), Image.BICUBIC)) for p in photos]
    return np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


def run(model: Tokenizer, image: torch.Tensor, spec: TileSpec | None, device: str, seed: int, *, rerun: bool = False) -> dict:
    """Encode and decode `image` (untiled when `spec` is None); with `rerun`, every statistics
    pass starts at the network's input (tiling before passes resumed)."""
    from_input = mock.patch.object(ActivationCache, "run", lambda self, stages, x: run_stages(stages, x))
    with torch.no_grad(), from_input if rerun else nullcontext():
        reset_peak_memory(device)
        start = time.perf_counter()
        tokens = model.encode(image.to(device)).cpu() if spec is None else encode_tiled(model, image, spec)
        encode_s, encode_peak = time.perf_counter() - start, peak_memory_gib(device)
        noise = None
        if model.config.generative:
            shape = (1, model.config.latent_channels, *tokens.shape[1:3])
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        reset_peak_memory(device)
        start = time.perf_counter()
        if spec is None:
            recon = model.decode(tokens, noise=noise).float().cpu()
        else:
            recon = decode_tiled(model, tokens, spec, noise=noise)
        decode_s, decode_peak = time.perf_counter() - start, peak_memory_gib(device)
    return {"tokens": tokens, "recon": recon, "encode": encode_s, "decode": decode_s, "peaks": (encode_peak, decode_peak)}


def describe(name: str, res: dict, image: torch.Tensor) -> str:
    """One line: times, peaks and PSNR to the original."""
    return (
        f"{name:28s} encode {res['encode']:7.1f} s  decode {res['decode']:7.1f} s  total {res['encode'] + res['decode']:7.1f} s  "
        f"peak {res['peaks'][0]:5.2f} / {res['peaks'][1]:5.2f} GiB  PSNR to original {psnr(res['recon'], image):6.2f} dB"
    )


def probe(model: Tokenizer, what: str, batch: int, tile: int, device: str) -> None:
    """Peak memory of one batch of windows through the encoder, then the decoder."""
    f = model.downsample
    tile -= tile % f
    print(f"model: {what}; {model.config.describe()}")
    print(f"probe: a batch of {batch} window(s) of {tile}x{tile} pixels; device {device}")
    reset_peak_memory(device)
    print(f"after loading the model         peak {peak_memory_gib(device):6.2f} GiB")
    windows = torch.rand(batch, 3, tile, tile, device=device) * 2 - 1
    with torch.no_grad():
        reset_peak_memory(device)
        start = time.perf_counter()
        codes = model.quantizer(model.encode_latent(windows)).quantized
        print(f"encoder                         peak {peak_memory_gib(device):6.2f} GiB  {time.perf_counter() - start:7.1f} s")
        noise = torch.randn_like(codes) if model.config.generative else None
        reset_peak_memory(device)
        start = time.perf_counter()
        model.decode_codes(codes, noise=noise)
        print(f"decoder                         peak {peak_memory_gib(device):6.2f} GiB  {time.perf_counter() - start:7.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_d16", help=NAMES)
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--stats", choices=STATS_MODES, nargs="+", default=["window", "image"],
                        help="tiled normalisation modes to compare, run in this order (default: window image; a "
                        "process's resident peak cannot drop below what an earlier run left mapped)")
    parser.add_argument("--cache-bytes", type=int, default=DEFAULT_CACHE_BYTES,
                        help="whole-image statistics: bytes of kept activations held in memory (default 1 GiB), the rest on disk")
    parser.add_argument("--rerun", action="store_true",
                        help="also whole-image statistics with every pass from the input (as before passes resumed); "
                        "checks the results are identical")
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
    if size < 2 * f:
        raise SystemExit(f"tiling.py: --size must be at least {2 * f} pixels for this model, got {args.size}")
    image = to_tensor(mosaic(size))
    cpu = f"{cpu_description()}, {os.cpu_count()} cores"
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else cpu
    print(f"machine: {where}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"model: {what}; {model.config.describe()}")
    print(f"image: {size}x{size} mosaic of scikit-image photos; tile {args.tile}px, overlap {args.overlap}px; "
          f"cache budget {args.cache_bytes / 2**30:.2f} GiB; device {args.device}", flush=True)
    # Tiled runs first: memory an untiled run frees may stay mapped and raise later peaks.
    tiled = {}
    for stats in args.stats:
        spec = TileSpec(args.tile, args.overlap, stats, cache_bytes=args.cache_bytes)
        tiled[f"{stats} stats"] = run(model, image, spec, args.device, 0)
        print(describe(f"tiled, {stats} stats", tiled[f"{stats} stats"], image), flush=True)
    if args.rerun:
        tiled["image stats, rerun"] = run(model, image, TileSpec(args.tile, args.overlap, "image"), args.device, 0, rerun=True)
        print(describe("tiled, image stats, rerun", tiled["image stats, rerun"], image), flush=True)
    base = run(model, image, None, args.device, 0) if not args.no_untiled else None
    if base is not None:
        print(describe("untiled", base, image))
        for name, res in tiled.items():
            diff = psnr(res["recon"], image) - psnr(base["recon"], image)
            same = (res["tokens"] == base["tokens"]).float().mean().item()
            distance = psnr(res["recon"], base["recon"])
            print(f"tiled, {name:21s} difference {diff:+.3f} dB  PSNR(untiled, tiled) {distance:6.2f} dB  "
                  f"equal tokens {same:6.1%}")
    if "image stats" in tiled and "window stats" in tiled:
        whole, alone = tiled["image stats"], tiled["window stats"]
        print("whole-image / per-window statistics time: "
              f"encode {whole['encode'] / alone['encode']:.2f}x  decode {whole['decode'] / alone['decode']:.2f}x  "
              f"total {(whole['encode'] + whole['decode']) / (alone['encode'] + alone['decode']):.2f}x")
    if "image stats, rerun" in tiled and "image stats" in tiled:
        whole, rerun = tiled["image stats"], tiled["image stats, rerun"]
        same = torch.equal(whole["tokens"], rerun["tokens"]) and torch.equal(whole["recon"], rerun["recon"])
        print(f"resumed vs rerun from the input: {'identical' if same else 'DIFFERENT'} tokens and reconstruction; "
              f"time {(whole['encode'] + whole['decode']) / (rerun['encode'] + rerun['decode']):.2f}x")


if __name__ == "__main__":
    try:
        main()
    except WetokError as exc:  # bad sizes, tiles, budgets: one line
        raise SystemExit(f"tiling.py: {exc}") from None
