"""Learning-rate schedules: a multiplier of the peak learning rate for each optimizer step, for
any trainer whose optimizer settings have the schedule's fields (`ScheduleSettings`)."""

from __future__ import annotations

import math
from typing import Protocol

SCHEDULES = ("constant", "cosine", "linear", "step")
LINEAR_HOLD = 0.05
"""`linear` without `decay_start`: the peak lr is held over this fraction of the steps after the
warm-up before the decay begins (the original generator recipe)."""


class ScheduleSettings(Protocol):
    """The fields of a trainer's optimizer section that the schedule reads (both trainers'
    `OptimSection`s have them, documented there)."""

    @property
    def warmup_steps(self) -> int: ...
    @property
    def schedule(self) -> str: ...  # constant | cosine | linear | step
    @property
    def min_lr_ratio(self) -> float: ...
    @property
    def decay_start(self) -> int | None: ...
    @property
    def drop_steps(self) -> tuple[int, ...]: ...
    @property
    def drop_factor(self) -> float: ...


def lr_factor(step: int, total_steps: int, optim: ScheduleSettings) -> float:
    """Multiplier in [0, 1] of the peak lr at `step` (0-based).

    Linear warm-up over `optim.warmup_steps` (from 1/warmup to 1), then: constant; cosine decay
    from 1 at `optim.decay_start` (default: the end of warm-up; constant until then) to
    `min_lr_ratio` at `total_steps`; linear decay likewise (default start: `LINEAR_HOLD` of the
    remaining steps after the warm-up, as the original generator recipe); or step drops
    (x `drop_factor` at each of `drop_steps`).
    """
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule in ("cosine", "linear"):
        start = optim.decay_start
        if start is None:
            hold = LINEAR_HOLD if optim.schedule == "linear" else 0.0
            start = optim.warmup_steps + round(hold * (total_steps - optim.warmup_steps))
        span = max(1, total_steps - start)
        progress = min(1.0, max(0, step - start) / span)
        shape = 1 - progress if optim.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * shape
    if optim.schedule == "step":
        return optim.drop_factor ** sum(1 for s in optim.drop_steps if step >= s)
    return 1.0


def schedule_errors(optim: ScheduleSettings, total_steps: int, *, section: str = "optim", steps_key: str = "train.steps") -> list[str]:
    """What is wrong with `optim`'s schedule for a run of `total_steps` steps, as one-line
    messages naming the keys (`section.schedule`, ...; `steps_key` for the run's length); empty
    when nothing is. The warm-up's sign is the trainer's to check."""
    o, s = optim, section
    checks = [
        (o.schedule in SCHEDULES, f"{s}.schedule must be constant, cosine, linear or step, got {o.schedule!r}"),
        (o.decay_start is None or o.warmup_steps <= o.decay_start < total_steps,
         f"{s}.decay_start must be null or from {s}.warmup_steps ({o.warmup_steps}) to below {steps_key} ({total_steps}), got {o.decay_start}"),
        (o.decay_start is None or o.schedule in ("cosine", "linear"),
         f"{s}.decay_start applies to {s}.schedule=cosine or linear only, got schedule {o.schedule!r}"),
        (not o.drop_steps or o.schedule == "step",
         f"{s}.drop_steps applies to {s}.schedule=step only, got schedule {o.schedule!r}"),
    ]
    return [message for ok, message in checks if not ok]
