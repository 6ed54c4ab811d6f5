"""Precision and recall (ADM's ManifoldEstimator, k = 3) against a brute-force numpy computation:
full distance matrices, sorted rows, `<=` at the radius (ties included), blocks of any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wetok.metrics.precision_recall as pr
from wetok.errors import WetokError
from wetok.metrics.precision_recall import manifold_radii, precision_recall


def _brute(reference: np.ndarray, samples: np.ndarray, k: int = 3, strict: bool = False) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(radii_ref, radii_samples, precision, recall) from full float64 distance matrices."""
    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)

    r_ref = np.sort(dist(reference, reference), axis=1)[:, k]  # index 0: the point itself
    r_smp = np.sort(dist(samples, samples), axis=1)[:, k]
    d = dist(reference, samples)  # (N_ref, N_samples)
    inside = (lambda a, b: a < b) if strict else (lambda a, b: a <= b)
    precision = float(np.mean([inside(d[:, j], r_ref).any() for j in range(len(samples))]))
    recall = float(np.mean([inside(d[i, :], r_smp).any() for i in range(len(reference))]))
    return r_ref, r_smp, precision, recall


@pytest.mark.parametrize("block", [1, 4, 7, 10_000])
def test_random_features_match_brute_force(block: int) -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(37, 6)).astype(np.float32)
    samples = (rng.normal(size=(23, 6)) * 1.3 + 0.4).astype(np.float32)
    r_ref, r_smp, precision, recall = _brute(reference, samples)
    np.testing.assert_allclose(manifold_radii(reference, block=block).numpy(), r_ref, rtol=1e-5)
    np.testing.assert_allclose(manifold_radii(torch.from_numpy(samples), block=block).numpy(), r_smp, rtol=1e-5)
    got = precision_recall(reference, samples, block=block)
    assert got == (precision, recall)
    assert 0 < precision < 1 and 0 < recall < 1  # informative data, not a saturated case


def test_ties_at_the_radius_count_as_inside() -> None:
    """Small integer features: float32 distances are exact integers, so ties at the radius are
    exact, and `<=` gives other numbers than `<` would."""
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 3, size=(40, 3)).astype(np.float32)
    samples = rng.integers(0, 4, size=(30, 3)).astype(np.float32)
    r_ref, r_smp, precision, recall = _brute(reference, samples)
    strict = _brute(reference, samples, strict=True)[2:]
    assert (precision, recall) != strict  # the data has ties at the radius
    np.testing.assert_array_equal(manifold_radii(reference, block=6).numpy(), r_ref)
    np.testing.assert_array_equal(manifold_radii(samples, block=6).numpy(), r_smp)
    assert precision_recall(reference, samples, block=6) == (precision, recall)


def test_known_values_and_given_radii() -> None:
    x = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    assert precision_recall(x, x) == (1.0, 1.0)  # every point lies in its own ball
    far = x + 1000
    assert precision_recall(x, far) == (0.0, 0.0)
    radii = manifold_radii(x)
    assert precision_recall(x, far, reference_radii=radii * 0 + 1e9) == (1.0, 0.0)  # huge reference balls


def test_never_more_than_a_block_of_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, int]] = []
    real = pr.squared_distances

    def spy(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        shapes.append((u.shape[0], v.shape[0]))
        return real(u, v)

    monkeypatch.setattr(pr, "squared_distances", spy)
    rng = np.random.default_rng(2)
    reference, samples = rng.normal(size=(50, 3)), rng.normal(size=(31, 3))
    want = _brute(reference, samples)[2:]
    assert precision_recall(reference, samples, block=8) == want
    assert shapes and max(r for r, _ in shapes) <= 8 and max(c for _, c in shapes) <= 8


def test_errors() -> None:
    with pytest.raises(WetokError, match="more than 3"):
        manifold_radii(np.zeros((3, 2)))
    with pytest.raises(WetokError, match="dimensions differ"):
        precision_recall(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(WetokError, match="shape"):
        manifold_radii(np.zeros(5))
