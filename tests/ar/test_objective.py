"""The generator's loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from support import make_generator
from wetok.ar.objective import subtoken_losses


def test_losses_equal_hand_computed_cross_entropies():
    # one sequence, two positions, two sub-tokens of a vocabulary of three
    logits = torch.tensor([[[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
                            [[1.0, 2.0, 3.0], [0.0, math.log(3.0), 0.0]]]])
    tokens = torch.tensor([[[1, 0], [2, 2]]])
    out = subtoken_losses(logits, tokens)
    # group 0: -log(1/3) and -log(e^3 / (e + e^2 + e^3)); group 1: -log(e^2 / (e^2 + 2)) and -log(1/5)
    g0 = (math.log(3.0) + (math.log(math.e + math.e**2 + math.e**3) - 3.0)) / 2
    g1 = ((math.log(math.e**2 + 2) - 2.0) + math.log(5.0)) / 2
    assert out.per_group.tolist() == pytest.approx([g0, g1], abs=1e-6)
    assert float(out.total) == pytest.approx(g0 + g1, abs=1e-6)
    # argmax: group 0 predicts 0 (a tie resolves to the first; true 1) then 2 (true 2);
    # group 1 predicts 0 (true 0) then 1 (true 2)
    assert out.accuracy.tolist() == pytest.approx([0.5, 0.5])
    assert out.total.dtype == torch.float32


def test_bf16_logits_are_scored_in_float32():
    logits = torch.randn(2, 3, 2, 16)
    tokens = torch.randint(0, 16, (2, 3, 2))
    low = subtoken_losses(logits.bfloat16(), tokens)
    assert low.total.dtype == torch.float32
    assert float(low.total) == pytest.approx(float(subtoken_losses(logits.bfloat16().float(), tokens).total), abs=1e-6)


def test_model_loss_is_the_sum_over_sub_tokens():
    model = make_generator().train(False)
    torch.manual_seed(0)
    tokens = torch.randint(0, 16, (3, 16, 2))
    labels = torch.tensor([0, 1, 2])
    logits = model(tokens, labels)
    expected = sum(torch.nn.functional.cross_entropy(logits[:, :, g].reshape(-1, 16), tokens[..., g].reshape(-1)) for g in range(2))
    assert float(model.loss(tokens, labels)) == pytest.approx(float(expected), rel=1e-6)
