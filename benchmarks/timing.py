"""What every benchmark prints with its figures: the machine (CPU model and vector extensions)
medians of repeated wall-clock timings, and peak memory."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

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


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory window: CUDA's allocator statistics, or this process's peak
    resident set size (Linux: VmHWM, reset through /proc/self/clear_refs)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gib(device: torch.device | str) -> float:
    """Peak memory since `reset_peak_memory`, GiB: CUDA max allocated, or peak RSS on the CPU
    (NaN where /proc is not there)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    kib = proc_kib("/proc/self/status", "VmHWM")
    return float("nan") if kib is None else kib / 2**20


def proc_kib(path: str, key: str) -> int | None:
    """The "key: N kB" line of a Linux /proc file (/proc/self/status, /proc/meminfo) as N, or None
    where the file or the line is not there."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None
