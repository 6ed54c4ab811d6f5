"""Held-out evaluation during training: the seeding rule of every wetok tool, whatever the batching."""

from __future__ import annotations

import pytest
import torch

import wetok
from support import TINY_CONFIG
from wetok.images import to_uint8
from wetok.metrics import psnr, ssim
from wetok.training.config import load_train_config
from wetok.training.reporting import heldout_metrics


def test_heldout_noise_follows_the_seeding_rule():
    torch.manual_seed(0)
    cfg = load_train_config(TINY_CONFIG, ["train.stage=2", "init.checkpoint=x"])
    model = wetok.Tokenizer(cfg.tokenizer_config()).eval()
    assert model.config.generative
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    values, first = heldout_metrics(model, images, batch_size=2)
    recon = model.reconstruct(images, seed=0)  # image i: noise from seed 0 + i
    assert torch.allclose(first, recon[:2], atol=1e-5)  # batched convolutions: the last bits may differ
    assert values["psnr"] == pytest.approx(psnr(to_uint8(images), to_uint8(recon)).mean().item(), rel=1e-6)
    assert values["ssim"] == pytest.approx(ssim(to_uint8(images), to_uint8(recon)).mean().item(), rel=1e-6)
    whole, first_whole = heldout_metrics(model, images, batch_size=8)
    assert whole == pytest.approx(values, rel=1e-6) and torch.allclose(first_whole, recon, atol=1e-5)
    assert not torch.allclose(recon, model.reconstruct(images, seed=5), atol=1e-2)  # the seed matters
