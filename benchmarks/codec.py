"""Encode/decode throughput of a tokenizer on the machine it runs on (random weights: speed only).

    python benchmarks/codec.py [--preset imagenet-d16] [--size 256] [--batch 4] [--repeats 5]

Prints the median seconds per batch and images/s for encode and decode, in the default memory
layout and in channels_last, and the largest difference between the two layouts' outputs.
Without --preset a small d8 architecture (ch 64, 32 bits) is used, since the released ones need
about 1 to 2 TFLOPs per 256x256 image.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import wetok


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=list(wetok.PRESETS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    config = (
        wetok.PRESETS[args.preset]
        if args.preset
        else wetok.TokenizerConfig(channels=64, channel_mult=(1, 2, 2, 4), num_res_blocks=2, latent_channels=32, groups=4)
    )
    torch.manual_seed(0)
    model = wetok.Tokenizer(config).eval().to(args.device)
    images = (torch.rand(args.batch, 3, args.size, args.size) * 2 - 1).to(args.device)
    print(f"{config.name or 'small d8'}: {config.describe()}; batch {args.batch} x {args.size}px on {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    outputs = {}
    for layout in ("contiguous", "channels_last"):
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        t_enc, tokens = timed(lambda: model.encode(images), args.repeats)
        t_dec, recon = timed(lambda: model.decode(tokens, generator=torch.Generator(args.device).manual_seed(0)), args.repeats)
        outputs[layout] = (tokens, recon)
        print(f"  {layout:13s} encode {t_enc:7.3f} s/batch ({args.batch / t_enc:7.2f} img/s)   "
              f"decode {t_dec:7.3f} s/batch ({args.batch / t_dec:7.2f} img/s)")
    (t0, r0), (t1, r1) = outputs["contiguous"], outputs["channels_last"]
    print(f"  tokens identical across layouts: {torch.equal(t0, t1)}; max |recon difference| {(r0 - r1).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
