"""Frechet distance between Gaussian fits of InceptionV3 features (FID, rFID), in float64.

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

tr((S1 S2)^(1/2)) is the sum of square roots of the eigenvalues of S1 S2, taken from a symmetric
matrix with the same non-zero eigenvalues: S1^(1/2) S2 S1^(1/2) (D x D), or, when S2 comes from
N < D feature vectors X (centred), X S1 X^T / (N - 1) (N x N, much cheaper). The value equals
scipy's `sqrtm`-based formula (pytorch-fid, the original evaluation) without complex arithmetic.

Reference statistics (the mean and covariance of a dataset's features under one protocol) are
kept in `.npz` files and reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WetokError
from ..files import atomic_write

STATS_FORMAT = "wetok-fid-stats-1"


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D), float64, of `count` feature vectors; `centred` keeps the
    centred vectors (N, D) when N < D (not saved), for the cheaper trace formula."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    centred: np.ndarray | None = None

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor) -> "GaussianStats":
        """Features (N, D), N >= 2 -> their mean and unbiased covariance (as `np.cov(rowvar=False)`), float64."""
        f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        if f.ndim != 2 or f.shape[0] < 2:
            raise WetokError(f"FID needs at least 2 feature vectors (N, D), got shape {f.shape}")
        f = f.astype(np.float64)
        mu = f.mean(axis=0)
        centred = f - mu if f.shape[0] < f.shape[1] else None
        return cls(mu=mu, sigma=np.cov(f, rowvar=False), count=int(f.shape[0]), centred=centred)

    def save(self, path: str | Path, key: str) -> None:
        """Write to an `.npz` file (atomically), tagged with `key` (what the statistics describe)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.savez(fh, mu=self.mu, sigma=self.sigma, count=np.int64(self.count), key=np.str_(key),
                         format=np.str_(STATS_FORMAT))

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> "GaussianStats | None":
        """Read statistics written by `save`; None when the file is absent or was made for another `key`."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != STATS_FORMAT or (key is not None and str(data["key"]) != key):
                    return None
                return cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64), count=int(data["count"]))
        except (OSError, KeyError, ValueError) as exc:
            raise WetokError(f"{path}: unreadable FID statistics ({exc}); delete it to recompute") from None


def stats_key(description: dict[str, Any]) -> str:
    """A stable hex digest of a JSON-able description (dataset files, protocol, network weights)."""
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """The Frechet distance between two Gaussians, computed in float64 (>= 0 up to rounding)."""
    if a.mu.shape != b.mu.shape or a.sigma.shape != b.sigma.shape:
        raise WetokError(f"feature statistics differ in dimension: {a.mu.shape} vs {b.mu.shape}")
    if a.centred is not None and b.centred is None:
        a, b = b, a  # symmetric in a and b: let b be the one with few vectors
    mu1, mu2 = torch.from_numpy(a.mu).double(), torch.from_numpy(b.mu).double()
    s1, s2 = torch.from_numpy(a.sigma).double(), torch.from_numpy(b.sigma).double()
    if b.centred is not None:
        x = torch.from_numpy(b.centred).double()
        inner = x @ s1 @ x.T / (b.count - 1)
    else:
        root1 = _sqrt_psd((s1 + s1.T) / 2)
        inner = root1 @ s2 @ root1
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = eig.clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + s1.trace() + s2.trace() - 2 * tr_covmean)
