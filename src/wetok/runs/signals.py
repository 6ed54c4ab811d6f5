"""How a run stops early: SIGTERM/SIGINT turned into a flag (a checkpoint is then written), and
a loss that became NaN or infinite (`TrainingDiverged`); one all-reduce per step asks both."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..distributed import Distributed, all_reduce_max
from ..errors import WetokError


class TrainingDiverged(WetokError):
    """A loss term became NaN or infinite."""


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (a checkpoint is then
    written). A context manager: the previous handlers come back on exit. `signal` is the number
    of the last signal received, 0 while none was."""

    def __init__(self) -> None:
        self.signal = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_finite(step: int, parts: Mapping[str, torch.Tensor | float], stop: StopRequest, info: Distributed) -> bool:
    """Raise `TrainingDiverged` naming the step (1-based, as checkpoints count) and the terms when
    any rank saw a NaN/inf among the loss terms `parts` (scalars); return whether any rank was
    asked to stop. One all-reduce for both questions: call on every rank after every step."""
    bad = [name for name, value in parts.items() if not math.isfinite(float(value))]
    nan_flag, stop_flag = all_reduce_max([1.0 if bad else 0.0, 1.0 if stop.signal else 0.0], info)
    if nan_flag:
        where = f"loss term {', '.join(bad)}" if bad else "a loss term on another process"
        raise TrainingDiverged(f"step {step}: {where} is not finite; stopped, the last good checkpoint is kept")
    return bool(stop_flag)


def run_steps(start: int, total: int, step: Callable[[int, StopRequest], int]) -> int:
    """`step(k, stop)` for k = start .. total - 1 with SIGTERM/SIGINT caught as `stop` (a step
    finishes, then writes a checkpoint and returns 128 + the signal); returns 0 after the last
    step, or the first non-zero status a step returns."""
    with StopRequest() as stop:
        for k in range(start, total):
            status = step(k, stop)
            if status:
                return status
    return 0
