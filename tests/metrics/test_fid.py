"""Frechet distance: closed forms, scipy's sqrtm formula, statistics files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wetok.errors import WetokError
from wetok.metrics.fid import GaussianStats, frechet_distance, stats_key


def _scipy_frechet(a: GaussianStats, b: GaussianStats) -> float:
    linalg = pytest.importorskip("scipy.linalg")
    covmean = linalg.sqrtm(a.sigma @ b.sigma)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * np.trace(covmean))


def test_identical_sets_give_zero() -> None:
    features = np.random.default_rng(0).normal(size=(300, 32))
    stats = GaussianStats.from_features(features)
    assert abs(frechet_distance(stats, stats)) < 1e-9 * np.trace(stats.sigma)


def test_two_known_gaussians_match_the_formula() -> None:
    # N(mu1, diag(s1)) vs N(mu2, diag(s2)): FD = |mu1-mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    a = GaussianStats(mu1, np.diag(s1), 10)
    b = GaussianStats(mu2, np.diag(s2), 10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    # Commuting but non-diagonal: rotate both by the same orthogonal matrix.
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    ra, rb = GaussianStats(q @ mu1, q @ np.diag(s1) @ q.T, 10), GaussianStats(q @ mu2, q @ np.diag(s2) @ q.T, 10)
    assert frechet_distance(ra, rb) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n1, n2, d", [(400, 400, 48), (30, 30, 48), (250, 250, 160), (300, 20, 48), (20, 300, 48)])
def test_equals_scipy_sqrtm_value(n1: int, n2: int, d: int) -> None:
    """Both the D x D route and the N x N route (fewer vectors than dimensions)."""
    rng = np.random.default_rng(n1 + n2 + d)
    x = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d)) * 0.2
    y = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.2 + 0.05
    a, b = GaussianStats.from_features(x), GaussianStats.from_features(y.astype(np.float32))
    np.testing.assert_allclose(a.sigma, np.cov(x, rowvar=False), rtol=1e-12)
    want = _scipy_frechet(a, b)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)


def test_statistics_file_round_trip_and_key(tmp_path: Path) -> None:
    stats = GaussianStats.from_features(np.random.default_rng(2).normal(size=(20, 5)))
    key = stats_key({"files": ["a.png", "b.png"], "size": 256})
    path = tmp_path / "sub" / "ref.npz"
    stats.save(path, key)
    loaded = GaussianStats.load(path, key)
    assert loaded is not None and loaded.count == 20
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert GaussianStats.load(path, stats_key({"files": ["a.png"], "size": 256})) is None
    assert GaussianStats.load(tmp_path / "absent.npz", key) is None
    assert [p.name for p in path.parent.iterdir()] == ["ref.npz"]  # no temporary left behind
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(WetokError, match="delete it"):
        GaussianStats.load(tmp_path / "bad.npz", key)
    with pytest.raises(WetokError, match="at least 2"):
        GaussianStats.from_features(np.zeros((1, 5)))
