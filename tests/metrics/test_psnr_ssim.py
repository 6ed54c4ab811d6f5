"""PSNR/SSIM (scikit-image, called per image) equal scikit-image used directly on varied uint8 images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data as skimage_data
import skimage.metrics as skimage_metrics
import torch

from wetok.errors import WetokError
from wetok.metrics.psnr_ssim import psnr, ssim


def _pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    photos = [skimage_data.astronaut()[:96, 40:160], skimage_data.coffee()[100:137, 200:250], skimage_data.chelsea()[:7, :9]]
    pairs = []
    for photo in photos:
        for sigma in (2.0, 25.0, 90.0):
            noisy = np.clip(photo.astype(np.float64) + rng.normal(0, sigma, photo.shape), 0, 255).round().astype(np.uint8)
            pairs.append((photo, noisy))
        pairs.append((photo, np.ascontiguousarray(photo[::-1])))  # structurally different
    flat = np.full((16, 16, 3), 77, np.uint8)
    pairs.append((flat, flat + 1))  # constant images: zero variance everywhere
    return pairs


def test_equal_to_scikit_image_one_by_one() -> None:
    for reference, test in _pairs():
        want_psnr = skimage_metrics.peak_signal_noise_ratio(reference, test)
        want_ssim = skimage_metrics.structural_similarity(reference, test, data_range=255, channel_axis=-1)
        got_psnr, got_ssim = psnr(reference, test), ssim(reference, test)
        assert got_psnr.shape == (1,) and got_psnr.dtype == torch.float64
        assert abs(got_psnr.item() - want_psnr) < 1e-9
        assert abs(got_ssim.item() - want_ssim) < 1e-9, (reference.shape, got_ssim.item(), want_ssim)


def test_batch_equals_single_images_and_tensors() -> None:
    rng = np.random.default_rng(1)
    batch_a = rng.integers(0, 256, (4, 20, 24, 3), dtype=np.uint8)
    batch_b = np.clip(batch_a.astype(int) + rng.integers(-30, 31, batch_a.shape), 0, 255).astype(np.uint8)
    want = [skimage_metrics.structural_similarity(a, b, data_range=255, channel_axis=-1) for a, b in zip(batch_a, batch_b)]
    got = ssim(torch.from_numpy(batch_a), torch.from_numpy(batch_b))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(psnr(batch_a, batch_b).numpy(), [skimage_metrics.peak_signal_noise_ratio(a, b) for a, b in zip(batch_a, batch_b)], atol=1e-9)


def test_identity_and_bad_input() -> None:
    image = skimage_data.astronaut()[:32, :32]
    assert math.isinf(psnr(image, image).item())
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(WetokError, match="uint8"):
        psnr(image.astype(np.float32), image)
    with pytest.raises(WetokError, match="shape"):
        ssim(image, image[:16])
    with pytest.raises(WetokError, match="at least 7x7"):
        ssim(image[:6], image[:6])
