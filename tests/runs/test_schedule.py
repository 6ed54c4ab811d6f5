"""Learning-rate schedules, for any optimizer settings with the schedule's fields, and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from wetok.runs.schedule import lr_factor, schedule_errors


@dataclass(frozen=True)
class Optim:
    """The fields `ScheduleSettings` asks for (both trainers' optimizer sections have them)."""

    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_start: int | None = None
    drop_steps: tuple[int, ...] = ()
    drop_factor: float = 0.1


def test_constant_with_warmup():
    o = Optim(warmup_steps=4)
    assert [lr_factor(s, 100, o) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_reaches_min_ratio():
    o = Optim(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(10, 110, o) == pytest.approx(1.0)
    assert lr_factor(60, 110, o) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, 110, o) == pytest.approx(0.1)


def test_step_drops():
    o = Optim(schedule="step", drop_steps=(5, 8), drop_factor=0.5)
    assert [lr_factor(s, 10, o) for s in (0, 4, 5, 7, 8, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_from_decay_start_is_constant_before():
    """Warm-up, a stable phase, then the cosine from `decay_start` (how a long run is finished)."""
    o = Optim(schedule="cosine", warmup_steps=4, decay_start=20)
    assert [lr_factor(s, 120, o) for s in (0, 3, 4, 19, 20)] == [0.25, 1.0, 1.0, 1.0, 1.0]
    assert lr_factor(70, 120, o) == pytest.approx(0.5)
    assert lr_factor(95, 120, o) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(120, 120, o) == pytest.approx(0.0)


def test_the_trainers_optimizer_sections_drive_the_same_schedule():
    from wetok.training.config import OptimSection

    o = OptimSection(schedule="cosine", warmup_steps=2, min_lr_ratio=0.2)
    mine = Optim(schedule="cosine", warmup_steps=2, min_lr_ratio=0.2)
    assert [lr_factor(s, 10, o) for s in range(11)] == [lr_factor(s, 10, mine) for s in range(11)]


@pytest.mark.parametrize(
    "optim, messages",
    [
        (Optim(), []),
        (Optim(schedule="cosine", warmup_steps=4, decay_start=4), []),
        (Optim(schedule="exponential"), ["optim.schedule must be constant, cosine, linear or step, got 'exponential'"]),
        (Optim(schedule="cosine", warmup_steps=4, decay_start=3),
         ["optim.decay_start must be null or from optim.warmup_steps (4) to below train.steps (10), got 3"]),
        (Optim(schedule="cosine", decay_start=10),
         ["optim.decay_start must be null or from optim.warmup_steps (0) to below train.steps (10), got 10"]),
        (Optim(decay_start=2), ["optim.decay_start applies to optim.schedule=cosine or linear only, got schedule 'constant'"]),
        (Optim(schedule="cosine", drop_steps=(5,)), ["optim.drop_steps applies to optim.schedule=step only, got schedule 'cosine'"]),
    ],
)
def test_schedule_errors_name_the_keys(optim, messages):
    assert schedule_errors(optim, 10) == messages


def test_schedule_errors_name_the_trainers_keys():
    assert schedule_errors(Optim(schedule="step", decay_start=1), 5, section="opt", steps_key="run.steps") == [
        "opt.decay_start applies to opt.schedule=cosine or linear only, got schedule 'step'"]
    assert schedule_errors(Optim(schedule="cosine", decay_start=9), 5, steps_key="run.steps") == [
        "optim.decay_start must be null or from optim.warmup_steps (0) to below run.steps (5), got 9"]


def test_linear_holds_the_peak_then_falls_to_the_floor():
    """The original generator recipe: after the warm-up the peak for 5% of the remaining steps,
    then a straight line to min_lr_ratio x peak at the last step."""
    o = Optim(schedule="linear", warmup_steps=10, min_lr_ratio=0.1)
    factors = [lr_factor(s, 210, o) for s in range(210)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10:20] == [1.0] * 10  # hold: round(0.05 x 200) = 10 steps
    assert factors[20 + 95] == pytest.approx(0.1 + 0.9 * (1 - 95 / 190))
    assert factors[-1] == pytest.approx(0.1 + 0.9 / 190)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    started = Optim(schedule="linear", decay_start=50, min_lr_ratio=0.0)
    assert lr_factor(50, 150, started) == 1.0 and lr_factor(100, 150, started) == pytest.approx(0.5)
