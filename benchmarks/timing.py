"""What every benchmark prints with its figures: the machine (CPU model and vector extensions)
and medians of repeated wall-clock timings."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_description() -> str:
    """The CPU's model name and its widest vector extensions, from /proc/cpuinfo (else the platform's
    processor string)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and not name:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name or platform.processor() or 'unknown CPU'} ({', '.join(isa) or 'no AVX2'})"


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device, *, warm: bool = True) -> float:
    """Median wall time of `repeats` calls of `fn`, after one warm-up call unless `warm` is False
    (CUDA synchronised)."""
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if warm:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
