"""Codebook usage and entropy per group."""

from __future__ import annotations

import math

import pytest
import torch

from wetok.errors import WetokError
from wetok.metrics.usage import TokenUsage


def test_counts_usage_and_entropy() -> None:
    usage = TokenUsage(groups=2, bits_per_group=2)
    # group 0: codes 0,1,2,3 once each (uniform: 2 bits); group 1: code 3 four times (0 bits)
    tokens = torch.tensor([[0, 3], [1, 3], [2, 3], [3, 3]]).view(1, 2, 2, 2)
    usage.update(tokens)
    assert usage.counts.tolist() == [[1, 1, 1, 1], [0, 0, 0, 4]]
    s = usage.summary()
    assert s["tokens_per_group"] == 4 and s["codebook_size"] == 4
    assert s["groups"][0] == {"used": 4, "usage": 1.0, "entropy_bits": pytest.approx(2.0), "max_entropy_bits": 2.0}
    assert s["groups"][1]["used"] == 1 and s["groups"][1]["entropy_bits"] == 0.0
    assert s["usage_all_groups"] == 1.0
    usage.update(torch.tensor([[[[0, 0]]]]))
    p = torch.tensor([2, 1, 1, 1]) / 5
    assert usage.summary()["groups"][0]["entropy_bits"] == pytest.approx(float(-(p * p.log2()).sum()))
    assert usage.summary()["groups"][1]["entropy_bits"] == pytest.approx(-(0.2 * math.log2(0.2) + 0.8 * math.log2(0.8)))


def test_empty_and_mismatched() -> None:
    usage = TokenUsage(groups=4, bits_per_group=8)
    assert usage.summary()["groups"][0] == {"used": 0, "usage": 0.0, "entropy_bits": 0.0, "max_entropy_bits": 8.0}
    with pytest.raises(WetokError, match="groups"):
        usage.update(torch.zeros(1, 2, 2, 3, dtype=torch.long))
