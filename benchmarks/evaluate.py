"""Evaluation throughput (images/s) per metric, at the 256x256 protocol.

    python benchmarks/evaluate.py [--device cpu|cuda] [--batch 8] [--repeats 3] [--preset imagenet-d16]

Metric networks get random weights (the cost does not depend on the values, and no pretrained
file is needed). Prints the median of `repeats` timed runs after one warm-up, for: PSNR, SSIM
(scikit-image), LPIPS AlexNet / VGG, InceptionV3 features (one image set; rFID
needs the originals once, then reconstructions), and the codec baselines' quality search (per
image, CPU) at the bit rate of `--preset`. The tokenizer's own encode/decode throughput is
`benchmarks/throughput.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from wetok import PRESETS
from wetok.evaluation.baselines import CODECS, compress_to_bpp
from wetok.metrics.inception import FIDInceptionV3
from wetok.metrics.lpips import LPIPS
from wetok.metrics.psnr_ssim import psnr, ssim


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="imagenet-d16", choices=sorted(PRESETS))
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    from skimage import data

    photo = np.asarray(data.astronaut())[::2, ::2][:256, :256]
    ref = torch.from_numpy(np.stack([np.roll(photo, 7 * k, axis=1) for k in range(args.batch)])).to(device)
    test = (ref.int() + torch.randint(-12, 13, ref.shape, device=device)).clamp(0, 255).to(torch.uint8)
    x = ref.permute(0, 3, 1, 2).float() / 127.5 - 1
    y = test.permute(0, 3, 1, 2).float() / 127.5 - 1

    rows: list[tuple[str, float]] = []
    with torch.no_grad():
        rows.append(("psnr", time_it(lambda: psnr(ref, test), device, args.repeats)))
        rows.append(("ssim", time_it(lambda: ssim(ref, test), device, args.repeats)))
        for net in ("alex", "vgg"):
            metric = LPIPS(net, pretrained=False).to(device)  # type: ignore[arg-type]
            rows.append((f"lpips_{net}", time_it(lambda: metric(x, y), device, args.repeats)))
        inception = FIDInceptionV3(pretrained=False).to(device)
        rows.append(("inception features (rfid, per image set)", time_it(lambda: inception(y), device, args.repeats)))
    images = ref.cpu().numpy()
    bpp = PRESETS[args.preset].latent_channels / PRESETS[args.preset].downsample ** 2
    for codec in CODECS:
        rows.append((f"baseline {codec} @ {bpp:.3f} bpp", time_it(lambda: [compress_to_bpp(im, codec, bpp) for im in images],
                                                                  torch.device("cpu"), args.repeats)))

    print(f"device {device}, batch {args.batch} x 256x256, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print("| step | images/s | ms/image |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {args.batch / seconds:.3g} | {1000 * seconds / args.batch:.4g} |")


if __name__ == "__main__":
    main()
