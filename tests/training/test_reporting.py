"""What the tokenizer's run reports: held-out evaluation (the seeding rule of every wetok tool,
whatever the batching) and the grid of originals over reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wetok
from support import TINY_CONFIG
from wetok.images import to_uint8
from wetok.metrics import psnr, ssim
from wetok.training.config import load_train_config
from wetok.training.reporting import heldout_metrics, reconstruction_grid


def test_heldout_noise_follows_the_seeding_rule():
    torch.manual_seed(0)
    cfg = load_train_config(TINY_CONFIG, ["train.stage=2", "init.checkpoint=x"])
    model = wetok.Tokenizer(cfg.tokenizer_config()).eval()
    assert model.config.generative
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    values, first = heldout_metrics(model, images, batch_size=2)
    recon = model.reconstruct(images, seed=0)  # image i: noise from seed 0 + i
    assert torch.allclose(first, recon[:2], atol=1e-5)  # batched convolutions: the last bits may differ
    # a pixel whose last bits round it the other way on 8 bits moves a mean by a few 1e-5
    assert values["psnr"] == pytest.approx(psnr(to_uint8(images), to_uint8(recon)).mean().item(), abs=1e-4)
    assert values["ssim"] == pytest.approx(ssim(to_uint8(images), to_uint8(recon)).mean().item(), abs=1e-4)
    whole, first_whole = heldout_metrics(model, images, batch_size=8)
    assert whole == pytest.approx(values, abs=1e-4) and torch.allclose(first_whole, recon, atol=1e-5)
    other = model.reconstruct(images, seed=5)
    assert not torch.allclose(recon, other, atol=1e-2)  # the seed matters, far beyond those tolerances:
    assert psnr(to_uint8(images), to_uint8(other)).mean().item() != pytest.approx(values["psnr"], abs=1e-3)
    assert ssim(to_uint8(images), to_uint8(other)).mean().item() != pytest.approx(values["ssim"], abs=1e-3)

def test_reconstruction_grid_puts_originals_over_reconstructions():
    images = torch.rand(10, 3, 4, 6) * 2 - 1
    recon = -images
    grid = reconstruction_grid(images, recon, limit=3)
    assert grid.shape == (8, 18, 3) and grid.dtype == np.uint8
    assert np.array_equal(grid[:4, 6:12], to_uint8(images[1])[0])  # the second original, top row
    assert np.array_equal(grid[4:, 12:], to_uint8(recon[2])[0])  # the third reconstruction, bottom row
    assert reconstruction_grid(images[:2], recon[:2]).shape == (8, 12, 3)  # fewer images than the limit
