"""GroupLFQ against the original's quantizer outputs, and its own invariants."""

from __future__ import annotations

import math

import pytest
import torch

import wetok
from wetok import GroupLFQ

LOSS_TOL = 1e-5
GRAD_TOL = 1e-4


def _cases(reference):
    data = torch.load(reference / "gq_losses_expected.pt", weights_only=True)
    assert set(data) == {"256_32_4", "64_12_2", "16_16_4"}
    return data


def test_losses_and_gradients_match_reference(reference):
    for key, exp in _cases(reference).items():
        n_embed, channels, groups = (int(v) for v in key.split("_"))
        q = GroupLFQ(channels, groups).train()
        assert q.codebook_size == n_embed
        x = exp["x"].clone().requires_grad_(True)
        out = q(x)
        assert torch.equal(out.quantized.detach(), exp["quant"])
        assert torch.equal(out.tokens.flatten(), exp["indices"].flatten())
        for mine, theirs in [
            (out.sample_entropy, exp["per_sample_entropy"]),
            (out.codebook_entropy, exp["codebook_entropy"]),
            (out.entropy_loss, exp["entropy_aux_loss"]),
            (out.commitment_loss, exp["commitment"]),
        ]:
            assert abs(mine.item() - theirs.item()) <= LOSS_TOL * abs(theirs.item()), key
        (out.entropy_loss + out.commitment_loss).backward()
        rel = (x.grad - exp["grad_x"]).abs().max() / exp["grad_x"].abs().max()
        assert rel.item() < GRAD_TOL, key


def test_tokens_codes_round_trip():
    q = GroupLFQ(24, 3)
    tokens = torch.randint(0, 256, (2, 5, 7, 3))
    codes = q.tokens_to_codes(tokens)
    assert codes.shape == (2, 24, 5, 7)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(q.codes_to_tokens(codes), tokens)
    # quantizing the codes themselves gives the same codes back
    assert torch.equal(q.eval()(codes).quantized, codes)


def test_bit_order_little_endian_within_group():
    q = GroupLFQ(8, 2)  # 4 bits per group
    x = -torch.ones(1, 8, 1, 1)
    x[0, 1] = 1.0  # group 0, bit 1 -> token 2
    x[0, 4] = 1.0  # group 1, bit 0 -> token 1
    x[0, 7] = 1.0  # group 1, bit 3 -> token 1 + 8
    assert q(x).tokens.flatten().tolist() == [2, 9]


def test_zero_maps_to_minus_one():
    q = GroupLFQ(4, 1)
    out = q(torch.zeros(1, 4, 1, 1))
    assert torch.equal(out.quantized, -torch.ones(1, 4, 1, 1)) and out.tokens.item() == 0


def test_eval_mode_has_no_losses_and_training_mode_straight_through():
    q = GroupLFQ(8, 2).eval()
    out = q(torch.randn(2, 8, 3, 3))
    assert out.entropy_loss is None and out.commitment_loss is None
    q.train()
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    out = q(x)
    out.quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight-through: identity gradient


def test_per_group_codebook_entropy_is_the_papers_formula():
    torch.manual_seed(0)
    x = torch.randn(3, 8, 2, 2)
    shared = GroupLFQ(8, 2).train()(x)
    per_group = GroupLFQ(8, 2, per_group_codebook_entropy=True).train()(x)
    assert torch.equal(shared.sample_entropy, per_group.sample_entropy)
    # By hand: per group, average the softmax over batch and positions, take the entropy, then
    # average the G entropies.
    codes = torch.tensor([[1.0 if (j >> i) & 1 else -1.0 for i in range(4)] for j in range(16)])
    grouped = x.permute(0, 2, 3, 1).reshape(3, 4, 2, 4)
    probs = torch.softmax(2 * grouped @ codes.T / 0.01, dim=-1)
    ent = []
    for g in range(2):
        avg = probs[:, :, g].reshape(-1, 16).mean(0)
        ent.append(-(avg * torch.log(avg + 1e-5)).sum())
    assert per_group.codebook_entropy.item() == pytest.approx(torch.stack(ent).mean().item(), rel=1e-6)
    avg = probs.reshape(-1, 16).mean(0)
    assert shared.codebook_entropy.item() == pytest.approx(-(avg * torch.log(avg + 1e-5)).sum().item(), rel=1e-6)


def test_entropy_bounds_and_weights():
    torch.manual_seed(1)
    q = GroupLFQ(12, 3, sample_weight=0.5, codebook_weight=2.0).train()
    out = q(torch.randn(4, 12, 4, 4))
    assert 0 <= out.sample_entropy.item() <= math.log(16)
    assert 0 <= out.codebook_entropy.item() <= math.log(16) + 1e-4
    assert out.entropy_loss.item() == pytest.approx(0.5 * out.sample_entropy.item() - 2.0 * out.codebook_entropy.item(), rel=1e-6)


def test_bad_tokens_are_clear_errors():
    q = GroupLFQ(16, 2)
    with pytest.raises(wetok.WetokError, match="out of range"):
        q.tokens_to_codes(torch.full((1, 2, 2, 2), 256))
    with pytest.raises(wetok.WetokError, match="shape"):
        q.tokens_to_codes(torch.zeros(1, 2, 2, 3, dtype=torch.long))
    with pytest.raises(wetok.WetokError, match="integer"):
        q.tokens_to_codes(torch.zeros(1, 2, 2, 2))


def test_constructor_validation():
    with pytest.raises(ValueError):
        GroupLFQ(10, 3)
    with pytest.raises(ValueError):
        GroupLFQ(64, 2)  # 32 bits per group: too many
