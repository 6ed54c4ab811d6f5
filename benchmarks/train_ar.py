"""Generator training throughput and peak memory of `wetok train-ar`'s real loop on synthetic
token shards.

    python benchmarks/train_ar.py                              # the digits demo's recipe, CPU, 2 threads
    python benchmarks/train_ar.py --model B --steps 12 --set data.batch_size=8
    python benchmarks/train_ar.py --model B --device cuda --precision bf16 --set data.batch_size=64

Prints the median token positions per second over windows of `--window` steps (the first window,
which includes start-up, is dropped), the sequences per second, and the peak memory: resident set
size on CPU, max allocated on CUDA. `--model digits` trains configs/ar-digits.yaml on 8 x 8 grids
of 2 sub-tokens of 4 bits; `--model B|L|XL` the preset on 16 x 16 grids of 4 sub-tokens of 8 bits
(ImageNet 256 px with a 16x tokenizer).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import cpu_description  # benchmarks/timing.py, beside this script

from wetok.execution import PRECISIONS

REPO = Path(__file__).resolve().parents[1]


def synthetic_shards(folder: Path, grid: int, groups: int, bits: int, images: int, classes: int) -> Path:
    """A shard folder of `images` random token grids (one view each) in `classes` classes, with a
    manifest naming a tokenizer of the right grid and sub-tokens (never loaded)."""
    from wetok import TokenizerConfig
    from wetok.ar.shards import ShardEntry, ShardManifest, shard_name, token_dtype, write_manifest, write_shard

    rng = np.random.default_rng(0)
    config = TokenizerConfig(channels=32, channel_mult=(1,) * 4 + (2,), num_res_blocks=1, latent_channels=groups * bits,
                             groups=groups)
    labels = np.arange(images) % classes
    dtype = token_dtype(bits)
    folder.mkdir(parents=True)
    write_shard(folder / shard_name(0), rng.integers(0, 2**bits, size=(images, grid, grid, groups)).astype(dtype),
                labels.astype(np.int64), np.arange(images, dtype=np.int64), np.zeros(images, np.uint8))
    manifest = ShardManifest(
        format="wetok-token-shards", version=1,
        tokenizer={"architecture": config.architecture_hash(), "weights_file": None, "preset": None, "config": config.to_dict(),
                   "weights_sha256": None},
        grid=(grid, grid), groups=groups, bits_per_group=bits, dtype=dtype.name, size=grid * 16, augment="none", views=1,
        crop_range=None, shard_size=images, classes=tuple(str(c) for c in range(classes)),
        files=tuple(f"{c}/{i}.png" for i, c in enumerate(labels)), file_labels=tuple(int(c) for c in labels),
        shards=(ShardEntry(shard_name(0), images, images),), unreadable=(), images=images)
    write_manifest(folder, manifest)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits", choices=["digits", "B", "L", "XL"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    from wetok.ar.training import load_ar_train_config, train_ar
    from wetok.runs.logs import METRICS_FILE

    torch.set_num_threads(args.threads)
    overrides = [f"train.steps={args.steps}", f"train.log_every={args.window}", f"train.threads={args.threads}",
                 f"train.device={args.device}", f"train.precision={args.precision}", "train.ckpt_every=1000000",
                 "sample.every=0", "tokenizer.model=null", "optim.warmup_steps=0"]
    if args.model == "digits":
        config, shape = REPO / "configs" / "ar-digits.yaml", (8, 2, 4, 1797, 10)
    else:
        config, shape = None, (16, 4, 8, 4096, 1000)
        overrides += [f"model.preset={args.model}", "data.batch_size=8"]
    cfg = load_ar_train_config(config, overrides + args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        shards = synthetic_shards(Path(tmp) / "shards", *shape)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        train_ar(cfg, shards, Path(tmp) / "run", progress=False)
        rows = [json.loads(line) for line in (Path(tmp) / "run" / METRICS_FILE).read_text().splitlines()]
    windows = [r["train/tokens_per_s"] for r in rows[1:]]  # row 0: step 1 alone, with start-up
    windows = windows[1:] if len(windows) > 2 else windows
    tokens = statistics.median(windows)
    positions = shape[0] ** 2
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        where = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        where = f"{cpu_description()}, {args.threads} thread(s)"
    batch = cfg.data.batch_size * cfg.optim.grad_accum
    print(f"generator {args.model}: {tokens:,.0f} token positions/s ({tokens / positions:.1f} sequences/s of {positions}), "
          f"batch {batch}, {args.precision}, peak memory {peak:.2f} GiB; median of {len(windows)} windows of {args.window} steps; "
          f"{where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
