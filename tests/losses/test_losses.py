"""Loss terms against values computed by hand on small tensors; the discriminator's layout."""

from __future__ import annotations

import math

import pytest
import torch

from wetok.losses import (
    LeCAM,
    PatchDiscriminator,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    l1_loss,
    l2_loss,
    non_saturating_generator_loss,
)


def test_l1_is_mean_absolute_difference():
    a = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    b = torch.tensor([[[[0.5, 1.0], [1.0, 0.0]]]])
    assert l1_loss(a, b).item() == pytest.approx((0.5 + 0 + 2 + 0.5) / 4)


def test_l2_is_mean_squared_difference():
    a = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    b = torch.tensor([[[[0.5, 1.0], [1.0, 0.0]]]])
    assert l2_loss(a, b).item() == pytest.approx((0.25 + 0 + 4 + 0.25) / 4)


def test_hinge_loss_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2 -> mean 2.5/3
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + f) = 0, 1, 2 -> mean 1
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (2.5 / 3 + 1.0))


def test_non_saturating_generator_loss_by_hand():
    fake = torch.tensor([0.0, 2.0, -1.0])
    expected = sum(math.log1p(math.exp(-v)) for v in (0.0, 2.0, -1.0)) / 3  # softplus(-x)
    assert non_saturating_generator_loss(fake).item() == pytest.approx(expected, rel=1e-6)


def test_lecam_updates_averages_then_regularises():
    lecam = LeCAM(decay=0.9)
    real = torch.tensor([1.0, 3.0])  # mean 2
    fake = torch.tensor([-1.0, 0.0])  # mean -0.5
    value = lecam(real, fake)
    ema_real, ema_fake = 0.1 * 2.0, 0.1 * -0.5
    assert lecam.ema_real.item() == pytest.approx(ema_real)
    assert lecam.ema_fake.item() == pytest.approx(ema_fake)
    first = ((1.0 - ema_fake) ** 2 + (3.0 - ema_fake) ** 2) / 2
    second = (max(0.0, ema_real + 1.0) ** 2 + max(0.0, ema_real - 0.0) ** 2) / 2
    assert value.item() == pytest.approx(first + second, rel=1e-6)
    # second call: the averages move on from their stored values
    lecam(real, fake)
    assert lecam.ema_real.item() == pytest.approx(0.9 * ema_real + 0.1 * 2.0)
    assert set(lecam.state_dict()) == {"ema_real", "ema_fake"}


def test_adaptive_weight_is_gradient_norm_ratio():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    rec = (3 * w).sum()  # grad (3, 3): norm 3*sqrt(2)
    gan = (w**2).sum()  # grad (2, 4): norm sqrt(20)
    expected = 3 * math.sqrt(2) / (math.sqrt(20) + 1e-4)
    assert adaptive_gan_weight(rec, gan, w).item() == pytest.approx(expected, rel=1e-6)
    assert adaptive_gan_weight(rec, 1e-9 * gan, w, max_weight=10.0).item() == 10.0


def test_patch_discriminator_shapes_and_released_names(reference):
    d = PatchDiscriminator()
    assert d(torch.zeros(2, 3, 256, 256)).shape == (2, 1, 30, 30)
    state = torch.load(reference / "tiny_d8_g8.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    released = {k[len("loss.discriminator."):]: v for k, v in state.items() if k.startswith("loss.discriminator.")}
    assert set(released) == set(d.state_dict())
    d.load_state_dict(released)


def test_patch_discriminator_init_statistics():
    torch.manual_seed(0)
    d = PatchDiscriminator(filters=64, layers=3)
    conv = d.main[2].weight
    assert abs(conv.mean().item()) < 2e-3 and conv.std().item() == pytest.approx(0.02, rel=0.05)
    bn = d.main[3].weight
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError):
        PatchDiscriminator(filters=0)
