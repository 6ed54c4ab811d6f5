"""Comparison grids and error heat maps."""

from __future__ import annotations

import numpy as np
import pytest

from wetok.evaluation.grid import HEAT_MAX_ERROR, comparison_grid, error_heatmap


def test_heatmap_scale() -> None:
    a = np.zeros((2, 3, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # saturates
    b[0, 1] = int(HEAT_MAX_ERROR / 2)  # half way: the middle anchor colour
    heat = error_heatmap(a, b)
    assert heat.shape == (2, 3, 3) and heat.dtype == np.uint8
    assert heat[1, 2].tolist() == [0, 0, 4]  # no error: black
    assert heat[0, 0].tolist() == [252, 255, 164]  # full scale: pale yellow
    assert heat[0, 1].tolist() == [188, 55, 84]


def test_grid_layout() -> None:
    small = np.full((16, 24, 3), 200, np.uint8)
    big = np.zeros((300, 100, 3), np.uint8)
    grid = comparison_grid([[small, big], [big, small]], ["a", "b"], cell=64, pad=2)
    assert grid.size == (2 * 66 + 2, 18 + 2 * 66 + 2)
    pixels = np.asarray(grid)
    assert pixels[18 + 2 + 32, 2 + 32].tolist() == [200, 200, 200]  # the small image enlarged x2, centred
    with pytest.raises(ValueError):
        comparison_grid([[small]], ["a", "b"])
