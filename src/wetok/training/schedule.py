"""Learning-rate schedules: a multiplier of the peak learning rate for each optimizer step."""

from __future__ import annotations

import math

from .config import OptimSection


def lr_factor(step: int, total_steps: int, optim: OptimSection) -> float:
    """Multiplier in [0, 1] of the peak lr at `step` (0-based).

    Linear warm-up over `optim.warmup_steps` (from 1/warmup to 1), then: constant; cosine decay
    from 1 at `optim.decay_start` (default: the end of warm-up; constant until then) to
    `min_lr_ratio` at `total_steps`; or step drops (x `drop_factor` at each of `drop_steps`).
    """
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        start = optim.warmup_steps if optim.decay_start is None else optim.decay_start
        span = max(1, total_steps - start)
        progress = min(1.0, max(0, step - start) / span)
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if optim.schedule == "step":
        return optim.drop_factor ** sum(1 for s in optim.drop_steps if step >= s)
    return 1.0
