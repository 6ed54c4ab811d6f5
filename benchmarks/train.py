"""Training throughput and peak memory of `wetok train`'s real loop on synthetic images.

    python benchmarks/train.py                                   # the default model's config, CPU, 1 thread
    python benchmarks/train.py --threads 2
    python benchmarks/train.py --config configs/stage1.yaml --device cuda --steps 40 \
        --set loss.perceptual_weight=0 --set data.batch_size=8     # imagenet-d16 at 256 px on a GPU

Prints the median images/s over windows of `--window` steps (the first window, which includes
start-up, is dropped) and the peak memory: resident set size on CPU, max allocated on CUDA.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def synthetic_images(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default-model.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    from wetok.runs.logs import METRICS_FILE
    from wetok.training.config import load_train_config
    from wetok.training.loop import train

    overrides = [
        f"train.steps={args.steps}", f"train.log_every={args.window}", f"train.threads={args.threads}",
        f"train.device={args.device}", "train.ckpt_every=1000000", "train.image_every=1000000", "eval.folder=null",
        "data.workers=0" if args.device == "cpu" else "data.workers=4",
    ] + args.overrides
    cfg = load_train_config(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "data", Path(tmp) / "run"
        data.mkdir()
        synthetic_images(data, 16, max(cfg.data.size * 2, 256))
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train(cfg, data, run, progress=False)
        windows = [json.loads(line)["train/images_per_s"] for line in (run / METRICS_FILE).read_text().splitlines()]
    rates = windows[1:-1] or windows[1:] or windows  # drop start-up and the (short) last window
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    tc = cfg.tokenizer_config()
    print(f"config {args.config.name}: {tc.describe()}, {cfg.data.batch_size} x {cfg.data.size}px, {cfg.train.precision}, "
          f"GAN {'on' if cfg.loss.gan_weight > 0 else 'off'}, LPIPS {'on' if cfg.loss.perceptual_weight > 0 else 'off'}")
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{device}: median {statistics.median(rates):.2f} images/s over {len(rates)} windows of {args.window} steps "
          f"(min {min(rates):.2f}, max {max(rates):.2f}); peak memory {peak:.0f} MiB "
          f"({'max allocated' if args.device == 'cuda' else 'peak RSS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
