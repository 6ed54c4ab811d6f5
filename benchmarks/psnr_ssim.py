"""PSNR/SSIM: scikit-image per image (what wetok calls) against a batched torch version (what
wetok had before, kept here as the measured alternative).

    python benchmarks/psnr_ssim.py [--batch 16] [--size 256] [--repeats 7] [--threads N] [--device cpu|cuda]

Times, in one process, on the same uint8 batch (B, H, W, 3):
    skimage: `wetok.metrics.psnr_ssim.psnr` / `ssim`, i.e. scikit-image's `peak_signal_noise_ratio`
        and `structural_similarity(data_range=255, channel_axis=-1)` called per image, on the CPU;
    batched: `batched_psnr` / `batched_ssim` below on the whole batch (float64 torch, on --device);
and prints the median of `repeats` timed runs after one warm-up, the ratio, the largest difference
between the two results, the CPU model (/proc/cpuinfo), torch's thread count and the device.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from timing import cpu_description, median_seconds  # benchmarks/timing.py, beside this script

WIN_SIZE = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0


def batched_psnr(reference: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) pair -> float64 (B,) PSNR in dB (scikit-image's formula), on their device."""
    x, y = reference.to(torch.float64), test.to(torch.float64)
    return 10.0 * torch.log10(DATA_RANGE**2 / (x - y).pow(2).mean(dim=(1, 2, 3)))


def batched_ssim(reference: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) pair, H, W >= 7 -> float64 (B,) SSIM equal to scikit-image's
    `structural_similarity(data_range=255, channel_axis=-1)`: a "valid" separable 7x7 box filter
    gives exactly the values scikit-image keeps after dropping its 3-pixel border."""
    x = reference.to(torch.float64).permute(0, 3, 1, 2)
    y = test.to(torch.float64).permute(0, 3, 1, 2)
    c = x.shape[1]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    means = F.avg_pool2d(F.avg_pool2d(stack, (1, WIN_SIZE), stride=1), (WIN_SIZE, 1), stride=1)
    ux, uy, uxx, uyy, uxy = means.split(c, dim=1)
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where the batched version runs (default cpu)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from skimage import data

    from wetok.metrics.psnr_ssim import psnr, ssim

    photo = np.asarray(data.astronaut())  # 512x512x3 uint8
    rng = np.random.default_rng(0)
    s = args.size
    ref = np.stack([np.roll(photo, 17 * k, axis=(0, 1))[:s, :s] for k in range(args.batch)])
    test = np.clip(ref.astype(np.int16) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    ref_t, test_t = torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device)
    cpu = torch.device("cpu")

    rows = []
    for name, library, batched in (("psnr", psnr, batched_psnr), ("ssim", ssim, batched_ssim)):
        t_lib = median_seconds(lambda f=library: f(ref, test), args.repeats, cpu)
        t_batched = median_seconds(lambda f=batched: f(ref_t, test_t), args.repeats, device)
        diff = float((library(ref, test) - batched(ref_t, test_t).cpu()).abs().max())
        rows.append((name, t_lib, t_batched, diff))
    print(f"CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads; batched on {device}")
    print(f"batch {args.batch} x {s}x{s}x3 uint8, median of {args.repeats} runs after one warm-up")
    print(f"{'metric':<6} {'skimage ms':>11} {'batched ms':>11} {'skimage/batched':>16} {'max |diff|':>11}")
    for name, t_lib, t_batched, diff in rows:
        print(f"{name:<6} {t_lib * 1e3:>11.1f} {t_batched * 1e3:>11.1f} {t_lib / t_batched:>16.2f} {diff:>11.1e}")


if __name__ == "__main__":
    main()
