"""Learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from wetok.training.config import OptimSection
from wetok.training.schedule import lr_factor


def test_constant_with_warmup():
    o = OptimSection(warmup_steps=4)
    assert [lr_factor(s, 100, o) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_reaches_min_ratio():
    o = OptimSection(schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(10, 110, o) == pytest.approx(1.0)
    assert lr_factor(60, 110, o) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, 110, o) == pytest.approx(0.1)


def test_step_drops():
    o = OptimSection(schedule="step", drop_steps=(5, 8), drop_factor=0.5)
    assert [lr_factor(s, 10, o) for s in (0, 4, 5, 7, 8, 9)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_from_decay_start_is_constant_before():
    """Warm-up, a stable phase, then the cosine from `decay_start` (how a long run is finished)."""
    o = OptimSection(schedule="cosine", warmup_steps=4, decay_start=20)
    assert [lr_factor(s, 120, o) for s in (0, 3, 4, 19, 20)] == [0.25, 1.0, 1.0, 1.0, 1.0]
    assert lr_factor(70, 120, o) == pytest.approx(0.5)
    assert lr_factor(95, 120, o) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    assert lr_factor(120, 120, o) == pytest.approx(0.0)
