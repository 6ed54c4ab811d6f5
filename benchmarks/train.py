"""Training throughput, peak memory and loss curves of `wetok train`'s real loop on synthetic
images, for several precisions and memory layouts side by side in one process.

    python benchmarks/train.py                                   # the default model's config, CPU, 1 thread
    python benchmarks/train.py --variants fp32,fp32+cl,bf16,bf16+cl --rounds 2
    python benchmarks/train.py --loss-curve 200 --variants fp32,fp32+cl --threads 2
    python benchmarks/train.py --config configs/stage1.yaml --device cuda --steps 40 \
        --set loss.perceptual_weight=0 --set data.batch_size=8     # imagenet-d16 at 256 px on a GPU

A variant is a precision (fp32, bf16, fp16; `train.precision`) with `+cl` for
`train.channels_last: true` (without it: contiguous NCHW). "today" is the config's own precision
on contiguous tensors, what `wetok train` ran before `train.channels_last` existed; it is always
measured, and every variant's ratio is against it.

Throughput (the default): each variant trains `--steps` steps from the config's seed on the same
16 synthetic images; `--rounds R` repeats the list R times, interleaved, so that a load that
changes over the run hits every variant alike. Prints per variant the median images/s over
windows of `--window` steps (each run's first window, which holds step 1 and the start-up, and its
last, shorter one are dropped) and the ratio to today's median; the peak memory per variant on
CUDA (max allocated), and the process's peak RSS over all variants on the CPU.

`--loss-curve STEPS`: exactly two variants (default: today and today + cl) each train STEPS
steps from the same seed on the same images, logging every step; prints how their total losses
compare: the first step's difference (same weights, same batch: rounding alone), the maximum and
mean absolute difference of a trailing moving average over `--smooth` steps (also as a fraction
of the span of the first variant's curve), and each variant's final loss and final moving
average. `--seed-reference` also trains the first variant from the next seed and prints the
same difference against it: the size of an ordinary run-to-run difference, for scale.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timing import cpu_description  # benchmarks/timing.py, beside this script

from wetok.execution import PRECISIONS

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One training setting to measure: `train.precision` and `train.channels_last`."""

    precision: str
    channels_last: bool

    @property
    def name(self) -> str:
        """e.g. "bf16+cl" (channels_last) or "fp32" (contiguous)."""
        return self.precision + ("+cl" if self.channels_last else "")

    def overrides(self) -> list[str]:
        """The `--set` overrides that select this variant."""
        return [f"train.precision={self.precision}", f"train.channels_last={'true' if self.channels_last else 'false'}"]


def parse_variant(text: str) -> Variant:
    """"fp32", "bf16+cl", ... -> Variant; anything else is an argparse error."""
    precision, _, layout = text.strip().partition("+")
    if precision not in PRECISIONS or layout not in ("", "cl"):
        raise argparse.ArgumentTypeError(f"unknown variant {text!r}: expected fp32, bf16 or fp16, optionally with +cl")
    return Variant(precision, layout == "cl")


def parse_variants(text: str) -> list[Variant]:
    """A comma-separated list of variants, each once, in the order given."""
    variants = [parse_variant(part) for part in text.split(",") if part.strip()]
    if not variants or len(set(variants)) != len(variants):
        raise argparse.ArgumentTypeError(f"expected distinct variants separated by commas, got {text!r}")
    return variants


def synthetic_images(folder: Path, count: int, size: int) -> None:
    """`count` smooth random RGB pictures of `size` x `size` (bicubic upscales of noise) as PNGs."""
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")


def run_variant(
    args: argparse.Namespace, variant: Variant, steps: int, log_every: int, data: Path, run: Path, extra: list[str] | None = None
) -> list[dict]:
    """Train `variant` for `steps` steps on `data` into `run` (with `extra` overrides last); its
    metrics.jsonl rows (one per logged step: the loss terms and `train/images_per_s` of the
    window ending there)."""
    from wetok.runs.logs import METRICS_FILE
    from wetok.training.config import load_train_config
    from wetok.training.loop import train

    cfg = load_train_config(args.config, benchmark_overrides(args, steps, log_every) + variant.overrides() + (extra or []))
    print(f"training {variant.name} for {steps} steps ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(io.StringIO()) as said:  # the run's own log lines, kept off the table
        status = train(cfg, data, run, progress=False)
    if status != 0:
        raise SystemExit(f"{variant.name}: wetok train stopped with status {status}:\n{said.getvalue()}")
    return [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]


def benchmark_overrides(args: argparse.Namespace, steps: int, log_every: int) -> list[str]:
    """The config overrides of every run: length, logging, threads, device, no checkpoints,
    grids or evaluation until the end, then the user's `--set`s."""
    return [
        f"train.steps={steps}", f"train.log_every={log_every}", f"train.threads={args.threads}",
        f"train.device={args.device}", "train.ckpt_every=1000000", "train.image_every=1000000", "eval.folder=null",
        "data.workers=0" if args.device == "cpu" else "data.workers=4",
    ] + args.overrides


def throughput(args: argparse.Namespace, variants: list[Variant], today: Variant, data: Path, tmp: Path) -> None:
    """Measure and print the images/s of every variant (see the module's docstring)."""
    rates: dict[Variant, list[float]] = {v: [] for v in variants}
    peaks: dict[Variant, float] = {v: 0.0 for v in variants}
    for r in range(args.rounds):
        for v in variants:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rows = run_variant(args, v, args.steps, args.window, data, tmp / f"{v.name}-{r}")
            windows = [row["train/images_per_s"] for row in rows]
            rates[v] += windows[1:-1] or windows[1:] or windows  # drop start-up and the (short) last window
            if args.device == "cuda":
                peaks[v] = max(peaks[v], torch.cuda.max_memory_allocated() / 2**20)
    base = statistics.median(rates[today])
    print(f"{args.steps} steps per run, windows of {args.window} steps, {args.rounds} round(s) interleaved; "
          f"today = {today.name} (the config's precision, contiguous)")
    cuda = args.device == "cuda"
    header = "| variant | images/s (median) | min | max | windows | vs today |" + (" max allocated |" if cuda else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for v in variants:
        median = statistics.median(rates[v])
        memory = f" {peaks[v]:.0f} MiB |" if cuda else ""
        print(f"| {v.name} | {median:.2f} | {min(rates[v]):.2f} | {max(rates[v]):.2f} | {len(rates[v])} "
              f"| {median / base:.2f}x |{memory}")
    if not cuda:
        print(f"peak RSS of the process over all variants: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def moving_average(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over `window` values: float64 (len(values) - window + 1,), entry i the mean
    of values[i : i + window] (the whole list's mean when it is shorter than `window`)."""
    x = np.asarray(values, dtype=np.float64)
    window = min(window, len(x))
    sums = np.cumsum(np.concatenate([[0.0], x]))
    return (sums[window:] - sums[:-window]) / window


def curve_difference(first: list[float], second: list[float], smooth: int) -> str:
    """How far apart two total-loss curves (one value per step) are: the maximum and mean
    absolute difference of their moving averages over `smooth` steps, also as a fraction of the
    span (max - min) of the first one's moving average (the loss may cross zero: the entropy
    term is negative)."""
    a, b = moving_average(first, smooth), moving_average(second, smooth)
    diff = np.abs(a - b)
    span = float(a.max() - a.min()) or 1.0
    return (f"max {diff.max():.5f} ({diff.max() / span:.1%} of the curve's span {span:.4f}), "
            f"mean {diff.mean():.5f} ({diff.mean() / span:.1%})")


def loss_curves(args: argparse.Namespace, variants: list[Variant], seed: int, data: Path, tmp: Path) -> None:
    """Train both variants for `--loss-curve` steps (and, with `--seed-reference`, the first one
    again from seed + 1) and print how their total losses compare."""
    steps, smooth = args.loss_curve, min(args.smooth, args.loss_curve)
    totals, speed = {}, {}
    for v in variants:
        rows = run_variant(args, v, steps, 1, data, tmp / v.name)
        totals[v] = [row["train/total"] for row in rows]
        speed[v] = statistics.median(row["train/images_per_s"] for row in rows[1:] or rows)
    a, b = variants
    print(f"loss curves over {steps} steps, same seed ({seed}) and images; moving average over {smooth} steps")
    print(f"step 1 total loss: {a.name} {totals[a][0]:.6f}, {b.name} {totals[b][0]:.6f} "
          f"(|difference| {abs(totals[a][0] - totals[b][0]):.2e}, rounding alone)")
    print(f"moving average of the total loss, |{a.name} - {b.name}|: {curve_difference(totals[a], totals[b], smooth)}")
    if args.seed_reference:
        rows = run_variant(args, a, steps, 1, data, tmp / "reference", [f"train.seed={seed + 1}"])
        other = [row["train/total"] for row in rows]
        print(f"for scale, {a.name} from seed {seed + 1} (other weights and data order) against seed {seed}: "
              f"{curve_difference(totals[a], other, smooth)}")
    for v in variants:
        print(f"{v.name}: final total loss {totals[v][-1]:.5f}, final moving average "
              f"{moving_average(totals[v], smooth)[-1]:.5f}, median {speed[v]:.2f} images/s (1-step windows)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default-model.yaml")
    parser.add_argument("--variants", type=parse_variants, default=None,
                        help="comma-separated, e.g. fp32,fp32+cl,bf16,bf16+cl (default: today and today+cl)")
    parser.add_argument("--steps", type=int, default=30, help="steps per throughput run")
    parser.add_argument("--window", type=int, default=5, help="steps per throughput window")
    parser.add_argument("--rounds", type=int, default=1, help="times the variant list is run, interleaved")
    parser.add_argument("--loss-curve", type=int, default=None, metavar="STEPS", help="compare two variants' loss curves instead")
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window of --loss-curve (steps)")
    parser.add_argument("--seed-reference", action="store_true",
                        help="--loss-curve: also train the first variant from seed + 1, for the scale of a run-to-run difference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    for name in ("steps", "window", "rounds", "smooth", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.loss_curve is not None and args.loss_curve <= 0:
        parser.error("--loss-curve must be positive")

    from wetok.errors import WetokError
    from wetok.training.config import load_train_config

    try:
        cfg = load_train_config(args.config, benchmark_overrides(args, args.steps, args.window))
    except WetokError as exc:
        parser.error(str(exc))
    today = Variant(cfg.train.precision, False)
    variants = args.variants or [today, Variant(today.precision, True)]
    if args.loss_curve is not None and len(variants) != 2:
        parser.error(f"--loss-curve compares two variants, got {len(variants)}")
    if args.loss_curve is None and today not in variants:
        variants = [today, *variants]
    tc = cfg.tokenizer_config()
    print(f"config {args.config.name}: {tc.describe()}, {cfg.data.batch_size} x {cfg.optim.grad_accum} x {cfg.data.size}px, "
          f"GAN {'on' if cfg.loss.gan_weight > 0 else 'off'}, LPIPS {'on' if cfg.loss.perceptual_weight > 0 else 'off'}")
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu_description()
    print(f"{device}, {args.threads} thread(s), torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        synthetic_images(data, 16, max(cfg.data.size * 2, 256))
        if args.loss_curve is not None:
            loss_curves(args, variants, cfg.train.seed, data, Path(tmp))
        else:
            throughput(args, variants, today, data, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
