"""Cost of the quantizer with its training losses: group-wise LFQ (GQ) against a full-codebook LFQ.

    python benchmarks/gq_cost.py --threads 1 --plot docs/images/gq-cost.png   # the figures in docs/quantizer-cost.md
    python benchmarks/gq_cost.py --positions 64 --lfq-bits 12 16              # a quick look
    python benchmarks/gq_cost.py --device cuda --positions 1024

One step is `GroupLFQ(C, G)` in training mode on a float32 latent of N positions: the forward
pass (signs, tokens, the per-sample and codebook entropies, the commitment loss) and the
backward pass through `entropy_loss + commitment_loss` and the straight-through output (with a
fixed random upstream gradient). Peak memory: each case in its own process, the step's peak
above the memory held before it (the resident set size, reset through /proc/self/clear_refs,
on CPU; max allocated on CUDA). Time: all cases in this process after a warm-up step each, the
median of `--repeats` rounds that time every case in turn (so a change in the machine's load
reaches all alike), each sample running as many steps as last 0.1 s.

The cases: groups of 8 bits (the released models' size) at 8 to 256 bits per position
(G = 1 to 32, 32/64/128 bits being the released configurations), 64 bits split into groups
of 2, 4 and 16 bits, and one group of 12 to 20 bits: a full-codebook LFQ, whose softmax runs
over all 2**C codes. Every case scores G * 2**b codes per position. The output: a Markdown table,
the least-squares fits of time and memory against G for 8-bit groups (slope, intercept, R^2),
the slope of log2(time) against the bits of a full codebook (1: time grows as 2**bits), and the
time ratios of the full codebooks to the released configurations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_description, median_seconds, peak_memory_gib, proc_kib, reset_peak_memory

from wetok.errors import WetokError
from wetok.files import atomic_write
from wetok.nn.quantizer import GroupLFQ

GROUP_BITS = 8
"""Bits per group of the released models."""
SPLIT_TOTAL = 64
"""Bits per position of the cases that split one code length into groups of other sizes."""
BYTES_PER_CODE = 32
"""Bytes of the step's peak memory per scored code and position, an upper bound (about 24
measured: six float32 values such as logits, probabilities, log-probabilities and gradients)."""
CODEBOOK_BYTES = 32
"""Bytes per bit of each of the 2**b codebook rows while the codebook is built, an upper bound
(int64 quotients and remainders, float32 codes and their temporaries)."""
MIN_SAMPLE_SECONDS = 0.1
"""Shortest timed sample: a step faster than this is repeated within a sample and the sample's time
divided, so that timer and scheduler noise stay small against it."""


@dataclass(frozen=True)
class Case:
    """One quantizer: `channels` bits per position in `groups` groups of `channels // groups` bits."""

    channels: int
    groups: int

    @property
    def group_bits(self) -> int:
        """b, bits per group."""
        return self.channels // self.groups

    @property
    def codes(self) -> int:
        """G * 2**b, codes the entropy loss scores at each position."""
        return self.groups * 2**self.group_bits

    @property
    def kind(self) -> str:
        """'LFQ' for one group (the full codebook), else 'GQ'."""
        return "LFQ" if self.groups == 1 else "GQ"


@dataclass(frozen=True)
class Measurement:
    """A case's cost at `positions` latent positions: median seconds of one forward and backward
    step (> 0) and the step's peak memory in bytes above what was held before it (>= 0)."""

    case: Case
    positions: int
    seconds: float
    peak_bytes: int


@dataclass(frozen=True)
class Fit:
    """Least-squares line y = slope * x + intercept, with its coefficient of determination r2
    (1 for points on the line; 1 also when every y is equal)."""

    slope: float
    intercept: float
    r2: float


def check_case(case: Case) -> None:
    """Raise WetokError unless `case` is a quantizer GroupLFQ builds (b from 1 to 24 bits)."""
    if case.channels <= 0 or case.groups <= 0 or case.channels % case.groups:
        raise WetokError(f"{case.channels} bits per position do not split into {case.groups} groups")
    if case.group_bits > 24:
        raise WetokError(f"{case.group_bits} bits per group is too many (at most 24)")


def default_cases(groups: Sequence[int], lfq_bits: Sequence[int], split_bits: Sequence[int]) -> list[Case]:
    """Groups of 8 bits for each G in `groups`, 64 bits in groups of each b in `split_bits`, and
    one group of each size in `lfq_bits`; duplicates dropped, in that order."""
    cases = [Case(GROUP_BITS * g, g) for g in groups]
    for b in split_bits:
        if b <= 0 or SPLIT_TOTAL % b:
            raise WetokError(f"--split-bits: {b} does not divide {SPLIT_TOTAL} bits")
        cases.append(Case(SPLIT_TOTAL, SPLIT_TOTAL // b))
    cases += [Case(b, 1) for b in lfq_bits]
    for case in cases:
        check_case(case)
    return list(dict.fromkeys(cases))


def estimated_peak_bytes(case: Case, positions: int) -> int:
    """An upper bound on the step's peak memory, to refuse a case that cannot fit before it runs:
    BYTES_PER_CODE per scored code and position plus CODEBOOK_BYTES per codebook bit."""
    return BYTES_PER_CODE * positions * case.codes + CODEBOOK_BYTES * case.group_bits * 2**case.group_bits


def available_bytes(device: torch.device) -> int | None:
    """Free memory of `device` (CUDA free memory, or the CPU's MemAvailable), None where unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    kib = proc_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def held_bytes(device: torch.device) -> int:
    """Memory held now, in bytes: CUDA memory allocated, or this process's resident set size
    (Linux's /proc/self/status)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    kib = proc_kib("/proc/self/status", "VmRSS")
    if kib is not None:
        return kib * 1024
    raise WetokError("peak memory on CPU needs Linux's /proc/self/status and /proc/self/clear_refs; try --device cuda")


def step(case: Case, positions: int, device: torch.device) -> Callable[[], None]:
    """One forward and backward step of `GroupLFQ(case)` in training mode.

    The latent is float32 (1, C, 1, N) from a fixed seed, requiring grad; the upstream gradient of
    the quantized output is a fixed float32 (1, C, 1, N). Before it returns, a step at one
    position has loaded what a first call loads (allocating next to nothing).
    """
    check_case(case)
    if positions <= 0:
        raise WetokError(f"positions ({positions}) must be positive")
    quantizer = GroupLFQ(case.channels, case.groups).train()
    generator = torch.Generator().manual_seed(0)

    def make(n: int) -> Callable[[], None]:
        shape = (1, case.channels, 1, n)
        x = torch.randn(shape, generator=generator).to(device).requires_grad_()
        upstream = torch.randn(shape, generator=generator).to(device)

        def run() -> None:
            x.grad = None
            out = quantizer(x)
            loss = out.entropy_loss + out.commitment_loss
            torch.autograd.backward([loss, out.quantized], [torch.ones_like(loss), upstream])

        return run

    make(1)()
    return make(positions)


def peak_memory(case: Case, positions: int, device: torch.device) -> int:
    """Peak memory in bytes of one step (see `step`) above the memory held before it; meaningful
    in a fresh process (`peak_memory_isolated`), where no memory freed earlier can be reused."""
    run = step(case, positions, device)
    held = held_bytes(device)
    reset_peak_memory(device)
    run()
    return max(round(peak_memory_gib(device) * 2**30) - held, 0)


def peak_memory_isolated(case: Case, positions: int, device: str, threads: int) -> int:
    """`peak_memory` in a fresh Python process (this script with --case); `threads` torch CPU
    threads (0: torch's choice)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--case", f"{case.channels},{case.groups}",
               "--positions", str(positions), "--device", device, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode} (killed for memory?)"]
        raise WetokError(f"{case.kind} {case.channels} bits in {case.groups} group(s): {lines[-1]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])


def step_seconds(cases: Sequence[Case], positions: int, repeats: int, device: torch.device) -> list[float]:
    """Median seconds of one step (see `step`) of each case, in this process.

    Each case's first step warms up and sets how many steps make one timed sample (enough to last
    MIN_SAMPLE_SECONDS); then `repeats` (>= 1) rounds time one sample of every case in turn, so
    that a change in the machine's load during the run reaches every case alike.
    """
    if repeats <= 0:
        raise WetokError(f"repeats ({repeats}) must be positive")
    samples = []
    for case in cases:
        run = step(case, positions, device)
        inner = max(1, math.ceil(MIN_SAMPLE_SECONDS / median_seconds(run, 1, device, warm=False)))
        samples.append((repeated(run, inner), inner))
    times: list[list[float]] = [[] for _ in cases]
    for round_ in range(repeats):
        print(f"  timing, round {round_ + 1} of {repeats}", file=sys.stderr, flush=True)
        for (sample, inner), recorded in zip(samples, times, strict=True):
            recorded.append(median_seconds(sample, 1, device, warm=False) / inner)
    return [statistics.median(t) for t in times]


def repeated(run: Callable[[], None], count: int) -> Callable[[], None]:
    """A function that calls `run` `count` times."""
    def sample() -> None:
        for _ in range(count):
            run()

    return sample


def measure(cases: Sequence[Case], positions: int, repeats: int, device: str, threads: int) -> list[Measurement]:
    """Every case's peak memory (each in its own process) and median step time (in this process,
    interleaved)."""
    peaks = []
    for case in cases:
        peaks.append(peak_memory_isolated(case, positions, device, threads))
        print(f"  peak memory, {case.channels} bits in {case.groups} group(s): {peaks[-1] / 2**20:,.1f} MiB",
              file=sys.stderr, flush=True)
    seconds = step_seconds(cases, positions, repeats, torch.device(device))
    return [Measurement(c, positions, t, p) for c, t, p in zip(cases, seconds, peaks, strict=True)]


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares line through at least two points whose xs are not all equal."""
    n = len(xs)
    if n < 2 or n != len(ys) or len(set(xs)) < 2:
        raise WetokError("a fit needs at least two points at different x")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys, strict=True))
    return Fit(slope, intercept, 1.0 - residual / total if total > 0 else 1.0)


def group_fits(results: Sequence[Measurement]) -> tuple[Fit, Fit] | None:
    """Time (s) and peak memory (bytes) against G for the 8-bit-group cases, None with fewer than two."""
    rows = [r for r in results if r.case.group_bits == GROUP_BITS]
    if len({r.case.groups for r in rows}) < 2:
        return None
    gs = [r.case.groups for r in rows]
    return linear_fit(gs, [r.seconds for r in rows]), linear_fit(gs, [r.peak_bytes for r in rows])


def codebook_fit(results: Sequence[Measurement]) -> Fit | None:
    """log2(time) against bits for the one-group cases of at least 12 bits (slope 1: time doubles
    with every bit, i.e. grows as 2**bits), None with fewer than two."""
    rows = [r for r in results if r.case.groups == 1 and r.case.channels >= 12]
    if len(rows) < 2:
        return None
    return linear_fit([r.case.channels for r in rows], [math.log2(r.seconds) for r in rows])


def report(results: Sequence[Measurement]) -> str:
    """A Markdown table of `results`, then the fits."""
    lines = [("| quantizer | bits per position | groups G | bits per group b | codes scored G·2^b | forward+backward "
              "| peak memory |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r.case
        lines.append(f"| {c.kind} | {c.channels} | {c.groups} | {c.group_bits} | {c.codes:,} | "
                     f"{r.seconds * 1e3:,.1f} ms | {r.peak_bytes / 2**20:,.1f} MiB |")
    lines.append("")
    fits = group_fits(results)
    if fits is not None:
        t, m = fits
        lines.append(f"8-bit groups, time against G: {t.slope * 1e3:.3f} ms per group {signed(t.intercept * 1e3)} ms, "
                     f"R^2 = {t.r2:.4f}")
        lines.append(f"8-bit groups, peak memory against G: {m.slope / 2**20:.3f} MiB per group "
                     f"{signed(m.intercept / 2**20)} MiB, R^2 = {m.r2:.4f}")
    lfq = codebook_fit(results)
    if lfq is not None:
        lines.append(f"one group, log2(time) against bits: slope {lfq.slope:.3f} (1 = time doubles with every bit), "
                     f"R^2 = {lfq.r2:.4f}")
    by_bits = {r.case: r for r in results}
    for big in (Case(20, 1), Case(16, 1)):
        for small in (Case(128, 16), Case(64, 8), Case(32, 4)):
            if big in by_bits and small in by_bits:
                ratio = by_bits[big].seconds / by_bits[small].seconds
                lines.append(f"LFQ {big.channels} bits / GQ {small.channels} bits (G = {small.groups}): {ratio:,.0f}x the time")
    return "\n".join(lines)


# ---- the plot ---------------------------------------------------------------------------------
SERIES_COLOURS = {"8-bit groups": (31, 119, 180), f"{SPLIT_TOTAL} bits, other groups": (44, 160, 44),
                  "one group (full codebook)": (214, 39, 40)}


def signed(value: float) -> str:
    """'+ 3.28' or '- 0.0102': a fit's intercept after its slope term."""
    return f"{'-' if value < 0 else '+'} {abs(value):.3g}"


def series_of(case: Case) -> str:
    """The plot series a case belongs to (keys of SERIES_COLOURS)."""
    if case.group_bits == GROUP_BITS:
        return "8-bit groups"
    if case.groups == 1:
        return "one group (full codebook)"
    return f"{SPLIT_TOTAL} bits, other groups"


def point_label(case: Case) -> tuple[str, str]:
    """A short label and where it stands by the point (right, left, above or below): 'G=16' for
    8-bit groups, '2^20' for a full codebook, 'b=16' for 64 bits split otherwise."""
    if case.group_bits == GROUP_BITS:
        return f"G={case.groups}", "below" if case.groups == 1 else "right"
    if case.groups == 1:
        return f"2^{case.channels}", "left"
    return f"b={case.group_bits}", "left" if case.group_bits < 4 else "above"  # clear of G=1 and b=4 at 256 codes


@dataclass(frozen=True)
class Panel:
    """A plot area: pixel box (left, top, right, bottom) and data limits, each axis linear or log10."""

    box: tuple[int, int, int, int]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    xlog: bool
    ylog: bool

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """Data (x, y) to image pixels."""
        def frac(v: float, lim: tuple[float, float], log: bool) -> float:
            if log:
                return (math.log10(v) - math.log10(lim[0])) / (math.log10(lim[1]) - math.log10(lim[0]))
            return (v - lim[0]) / (lim[1] - lim[0])

        left, top, right, bottom = self.box
        return left + frac(x, self.xlim, self.xlog) * (right - left), bottom - frac(y, self.ylim, self.ylog) * (bottom - top)


def linear_ticks(hi: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `hi` (> 0), about `count` of them."""
    raw = hi / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    return [i * step for i in range(math.ceil(hi / step - 1e-9) + 1)]


def log_limits(values: Sequence[float]) -> tuple[float, float]:
    """Powers of ten around positive `values`, none of them closer than a factor 1.4 to an end."""
    return 10 ** math.floor(math.log10(min(values) / 1.4)), 10 ** math.ceil(math.log10(max(values) * 1.4))


def tick_text(v: float) -> str:
    """A tick value in few characters: 0.5, 20, 1e+03."""
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    return f"1e{round(math.log10(v))}" if math.isclose(10 ** round(math.log10(v)), v) else f"{v:.0e}"


def draw_panel(image, panel: Panel, title: str, xlabel: str, ylabel: str,
               points: Sequence[tuple[float, float, str, tuple[int, int, int], str]], fit: Fit | None, fit_text: str) -> None:
    """Axes, ticks, grid, `points` (x, y, label, colour, label side: right, left, above, below) and an
    optional line y = slope * x + intercept, kept within the panel, on a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=13)
    left, top, right, bottom = panel.box
    grey, black = (215, 215, 215), (0, 0, 0)
    if panel.xlog:
        xticks = [10.0**k for k in range(round(math.log10(panel.xlim[0])), round(math.log10(panel.xlim[1])) + 1)]
    else:
        xticks = linear_ticks(panel.xlim[1])
    if panel.ylog:
        yticks = [10.0**k for k in range(round(math.log10(panel.ylim[0])), round(math.log10(panel.ylim[1])) + 1)]
    else:
        yticks = linear_ticks(panel.ylim[1])
    for v in xticks:
        if panel.xlim[0] <= v <= panel.xlim[1]:
            px = panel.pixel(v, panel.ylim[0])[0]
            draw.line([(px, top), (px, bottom)], fill=grey)
            draw.text((px, bottom + 6), tick_text(v), fill=black, font=small, anchor="mt")
    for v in yticks:
        if panel.ylim[0] <= v <= panel.ylim[1]:
            py = panel.pixel(panel.xlim[0], v)[1]
            draw.line([(left, py), (right, py)], fill=grey)
            draw.text((left - 6, py), tick_text(v), fill=black, font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=black)
    draw.text(((left + right) / 2, top - 10), title, fill=black, font=font, anchor="mb")
    draw.text(((left + right) / 2, bottom + 28), xlabel, fill=black, font=font, anchor="mt")
    label = Image.new("RGBA", (int(draw.textlength(ylabel, font=font)) + 4, 20), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((2, 10), ylabel, fill=black, font=font, anchor="lm")
    label = label.rotate(90, expand=True)
    image.paste(label, (left - 66, int((top + bottom) / 2 - label.height / 2)), label)
    if fit is not None:
        (x0, x1), (y0, y1) = panel.xlim, panel.ylim
        steps = [i / 200 for i in range(201)]
        xs = [x0 * (x1 / x0) ** t for t in steps] if panel.xlog else [x0 + (x1 - x0) * t for t in steps]
        line = [panel.pixel(x, y) for x in xs if y0 <= (y := fit.slope * x + fit.intercept) <= y1]
        if len(line) > 1:
            draw.line(line, fill=(120, 120, 120), width=2)
        draw.text((left + 10, top + 8), fit_text, fill=(90, 90, 90), font=small, anchor="lt")
    for x, y, text, colour, side in points:
        px, py = panel.pixel(x, y)
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=colour, outline=black)
        where = {"right": ((px + 8, py), "lm"), "left": ((px - 8, py), "rm"), "above": ((px, py - 8), "mb"),
                 "below": ((px, py + 8), "mt")}[side]
        if text:
            draw.text(where[0], text, fill=colour, font=small, anchor=where[1])


def write_plot(results: Sequence[Measurement], path: Path, caption: str) -> None:
    """A 2 x 2 PNG at `path` (written atomically): time and memory against G for 8-bit groups
    (linear axes, with the fits), and against codes scored per position for every case (log axes,
    with the line proportional to codes scored through the largest case). Needs at least two
    8-bit-group cases. Drawn with Pillow, which wetok already needs, so that the benchmark runs
    in wetok's own environment (matplotlib is not one of its dependencies)."""
    from PIL import Image, ImageDraw, ImageFont

    fits = group_fits(results)
    if fits is None:
        raise WetokError("the plot needs at least two cases of 8-bit groups (--groups)")
    width, height = 1300, 1000
    image = Image.new("RGB", (width, height), "white")
    grouped = [r for r in results if r.case.group_bits == GROUP_BITS]
    g_max = max(r.case.groups for r in grouped)
    panels = []
    for column, (value, unit, scale, fit) in enumerate([
        (lambda r: r.seconds, "ms", 1e3, fits[0]), (lambda r: r.peak_bytes, "MiB", 1 / 2**20, fits[1])]):
        left, top = 90 + column * 650, 60
        scaled = Fit(fit.slope * scale, fit.intercept * scale, fit.r2)
        y_max = max(*(value(r) * scale for r in grouped), scaled.slope * g_max + scaled.intercept) * 1.12
        linear = Panel((left, top, left + 530, top + 340), (0, g_max * 1.05), (0, y_max), False, False)
        what = "time" if unit == "ms" else "peak memory"
        panels.append((linear, f"8-bit groups: {what} against G", "groups G", f"{what} ({unit})",
                       [(r.case.groups, value(r) * scale, f"{r.case.channels} bits" if r.case.channels in (32, 64, 128) else "",
                         SERIES_COLOURS["8-bit groups"], "below") for r in grouped],
                       scaled, (f"fit: {scaled.slope:.3g} {unit} per group {signed(scaled.intercept)} {unit}, "
                                f"R^2 = {scaled.r2:.4f}")))
        ys = [max(value(r) * scale, 1e-3) for r in results]
        log = Panel((left, top + 480, left + 530, top + 820), log_limits([r.case.codes for r in results]),
                    log_limits(ys), True, True)
        largest = max(range(len(results)), key=lambda i: results[i].case.codes)
        panels.append((log, f"every case: {what} against codes scored", "codes scored per position, G * 2^b (log)",
                       f"{what} ({unit}, log)",
                       [(r.case.codes, y, text, SERIES_COLOURS[series_of(r.case)], side)
                        for r, y, (text, side) in zip(results, ys, map(point_label, (r.case for r in results)), strict=True)],
                       Fit(ys[largest] / results[largest].case.codes, 0.0, 1.0), f"line: {what} proportional to codes scored"))
    for args in panels:
        draw_panel(image, *args)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    x = 90
    for name, colour in SERIES_COLOURS.items():
        draw.ellipse([x, 957, x + 10, 967], fill=colour, outline=(0, 0, 0))
        draw.text((x + 16, 962), name, fill=(0, 0, 0), font=font, anchor="lm")
        x += int(draw.textlength(name, font=font)) + 50
    draw.text((width - 20, 962), caption, fill=(60, 60, 60), font=font, anchor="rm")
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


# ---- command line -----------------------------------------------------------------------------
def parse_case(text: str) -> Case:
    """'C,G' to a Case."""
    try:
        channels, groups = (int(v) for v in text.split(","))
    except ValueError:
        raise WetokError(f"--case {text!r}: expected BITS,GROUPS") from None
    case = Case(channels, groups)
    check_case(case)
    return case


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--positions", type=int, default=256,
                        help="latent positions N (default 256, the 16 x 16 latent of one 256 px image at downsampling 16)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed samples per case after the first step; the median is reported (default 3)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="G for 8-bit groups")
    parser.add_argument("--split-bits", type=int, nargs="*", default=[2, 4, 16],
                        help=f"bits per group of {SPLIT_TOTAL}-bit codes split otherwise (default 2 4 16)")
    parser.add_argument("--lfq-bits", type=int, nargs="*", default=[12, 14, 16, 18, 20],
                        help="code lengths of one-group LFQ (default 12 14 16 18 20)")
    parser.add_argument("--plot", type=Path, help="write the figure (PNG) here")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # BITS,GROUPS: measure one case, print JSON
    args = parser.parse_args(argv)
    try:
        if args.positions <= 0 or args.repeats <= 0 or args.threads < 0:
            raise WetokError("--positions and --repeats must be positive, --threads not negative")
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise WetokError("--device cuda: no CUDA device available")
        if device.type not in ("cpu", "cuda"):
            raise WetokError(f"--device {args.device}: expected cpu or cuda")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.case:
            print(json.dumps({"peak_bytes": peak_memory(parse_case(args.case), args.positions, device)}))
            return 0
        if args.plot is not None and not args.plot.parent.is_dir():
            raise WetokError(f"--plot {args.plot}: no such folder {args.plot.parent}")
        cases = default_cases(args.groups, args.lfq_bits, args.split_bits)
        free = available_bytes(device)
        for case in cases:
            need = estimated_peak_bytes(case, args.positions)
            if free is not None and need > free:
                raise WetokError(f"{case.kind} {case.channels} bits in {case.groups} group(s) at {args.positions} positions "
                                 f"needs about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free; lower --positions")
        machine = f"{cpu_description()}, {os.cpu_count()} cores" if device.type == "cpu" else torch.cuda.get_device_name(device)
        header = (f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}; "
                  f"{args.positions} positions, float32, median of {args.repeats} samples")
        print(header, flush=True)
        results = measure(cases, args.positions, args.repeats, args.device, args.threads)
        print()
        print(report(results))
        if args.plot is not None:
            caption = (f"{machine}, {torch.get_num_threads()} thread(s); N = {args.positions} positions, float32, "
                       "forward + backward")
            write_plot(results, args.plot, caption)
            print(f"wrote {args.plot}")
    except WetokError as exc:
        print(f"gq_cost: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
