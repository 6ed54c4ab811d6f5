"""Inception Score (Salimans et al., 2016) as OpenAI's ADM evaluator computes it (guided-diffusion
`evaluations/evaluator.py`, after improved-gan's `inception_score/model.py`).

The class predictions p (N, C) are cut into consecutive splits of `split_size` rows (5000; the
last split may be shorter). For each split, with the split's marginal q = mean of its rows:

    score = exp( mean over rows i of KL(p_i || q) ),  KL(p_i || q) = sum_c p_ic (log p_ic - log q_c)

and the Inception Score is the mean of the split scores. Computed in float64 here (the ADM
evaluator: float32); a probability of exactly 0 contributes 0 (p log p -> 0; ADM's formula would
give NaN there).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WetokError

SPLIT_SIZE = 5000
"""Rows per split, as the ADM evaluator."""


def softmax_probabilities(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, C) logits -> (N, C) softmax probabilities, float64."""
    x = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    x = x.astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(
    *, logits: np.ndarray | torch.Tensor | None = None, probabilities: np.ndarray | torch.Tensor | None = None,
    split_size: int = SPLIT_SIZE,
) -> float:
    """The ADM evaluator's Inception Score of (N, C) logits (softmax taken here) or probabilities
    (rows summing to 1); give exactly one of them."""
    if (logits is None) == (probabilities is None):
        raise ValueError("give either logits or probabilities")
    if split_size < 1:
        raise ValueError(f"split_size must be at least 1, got {split_size}")
    if logits is not None:
        p = softmax_probabilities(logits)
    else:
        assert probabilities is not None
        p = probabilities.detach().cpu().numpy() if isinstance(probabilities, torch.Tensor) else np.asarray(probabilities)
        p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise WetokError(f"Inception Score needs predictions (N, C) with N >= 1, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise WetokError("Inception Score: predictions must be finite and non-negative")
    scores = []
    for start in range(0, p.shape[0], split_size):
        part = p[start:start + split_size]
        marginal = part.mean(axis=0, keepdims=True)
        positive = part > 0
        log_ratio = np.log(np.where(positive, part, 1.0)) - np.log(np.where(positive, marginal, 1.0))
        kl = np.where(positive, part * log_ratio, 0.0).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores))
