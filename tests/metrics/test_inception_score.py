"""The ADM evaluator's Inception Score against an independent formulation (scipy's KL divergence,
per split) and known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy

from wetok.errors import WetokError
from wetok.metrics.inception_score import SPLIT_SIZE, inception_score, softmax_probabilities


def _scipy_score(p: np.ndarray, split_size: int) -> float:
    scores = []
    for start in range(0, len(p), split_size):
        part = p[start:start + split_size]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean(entropy(part, marginal[None, :], axis=1))))  # entropy(p, q) = KL(p || q), per row
    return float(np.mean(scores))


@pytest.mark.parametrize("n, split_size", [(23, 5), (20, 5), (7, 100), (12_001, SPLIT_SIZE)])
def test_matches_scipy_kl_per_split(n: int, split_size: int) -> None:
    logits = np.random.default_rng(n).normal(size=(n, 6)) * 2
    p = softmax(logits, axis=1)
    want = _scipy_score(p, split_size)
    assert inception_score(logits=logits, split_size=split_size) == pytest.approx(want, rel=1e-10)
    assert inception_score(probabilities=p, split_size=split_size) == pytest.approx(want, rel=1e-10)
    assert inception_score(logits=torch.from_numpy(logits).float(), split_size=split_size) == pytest.approx(want, rel=1e-5)
    if n > split_size:  # a different split size gives another score: the splits matter
        assert abs(inception_score(logits=logits, split_size=n) - want) > 1e-6


def test_known_values() -> None:
    assert inception_score(probabilities=np.full((30, 8), 1 / 8)) == pytest.approx(1.0, abs=1e-12)
    one_hot = np.eye(20)[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]  # 10 distinct classes, splits of 5: 5 classes each
    assert inception_score(probabilities=one_hot, split_size=5) == pytest.approx(5.0, rel=1e-12)
    assert inception_score(probabilities=one_hot, split_size=10) == pytest.approx(10.0, rel=1e-12)
    twice = np.eye(4)[[0, 0, 1, 1]]  # 2 classes, each twice
    assert inception_score(probabilities=twice, split_size=4) == pytest.approx(2.0, rel=1e-12)


def test_softmax_and_errors() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    p = softmax_probabilities(logits)
    np.testing.assert_allclose(p, softmax(logits, axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="either"):
        inception_score()
    with pytest.raises(ValueError, match="either"):
        inception_score(logits=logits, probabilities=p)
    with pytest.raises(WetokError, match="non-negative"):
        inception_score(probabilities=np.array([[1.5, -0.5]]))
    with pytest.raises(WetokError, match="shape"):
        inception_score(probabilities=np.zeros(3))
