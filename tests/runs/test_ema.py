"""The exponential moving average of a model's weights: its warm-up, buffers and state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wetok.runs.ema import EMA


def test_ema_follows_the_weights_with_a_warm_up_and_copies_buffers():
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(5.0)
    ema.update(model)  # d = min(0.9, 1 / 10) = 0.1
    assert ema.model[0].weight.item() == pytest.approx(0.1 * 1.0 + 0.9 * 3.0)
    assert ema.model[1].running_mean.item() == 5.0
    ema.update(model)  # d = 2 / 11
    assert ema.model[0].weight.item() == pytest.approx(2 / 11 * 2.8 + 9 / 11 * 3.0)
    for _ in range(78):
        ema.update(model)
    assert ema.updates == 80  # (1 + 80) / (10 + 80) = 0.9: the warm-up is over
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    before = ema.model[0].weight.item()
    ema.update(model)  # past the warm-up: d = decay
    assert ema.model[0].weight.item() == pytest.approx(0.9 * before)


def test_ema_state_round_trip():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.99)
    ema.update(nn.Linear(3, 2))
    other = EMA(nn.Linear(3, 2), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(), ema.model.state_dict().values()))
