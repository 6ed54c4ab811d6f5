"""PSNR and SSIM of uint8 images, by scikit-image (pinned 0.26.0), one image at a time:

    psnr: skimage.metrics.peak_signal_noise_ratio(reference, test, data_range=255)
    ssim: skimage.metrics.structural_similarity(reference, test, data_range=255, channel_axis=-1)

(7x7 uniform window, sample covariance, K1 0.01, K2 0.03, the 3-pixel border left out, mean over
channels; float64.) Images on a GPU are copied to the CPU first.

Why not wetok's former batched torch version (float64, separable 7x7 `avg_pool2d`, equal to
scikit-image to 1e-14; kept in `benchmarks/psnr_ssim.py`): on the CPU it is slower. Figures of
`python benchmarks/psnr_ssim.py` (16 images of 256x256x3, median of 7 runs after a warm-up, one
process) on an AMD EPYC with AVX512-BF16, 2 cores, torch 2.14.1, scikit-image 0.26.0:

    metric  scikit-image  batched, 2 threads  batched, 1 thread
    psnr          5.1 ms             51.4 ms            41.1 ms
    ssim        198.5 ms            526.2 ms           467.1 ms

On a GPU the batched version would avoid copying the images to the CPU; `benchmarks/psnr_ssim.py
--device cuda` times both there. On the CPU, SSIM costs about 12 ms of one core per 256x256 image.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..errors import WetokError

DATA_RANGE = 255
WIN_SIZE = 7
"""SSIM window side (scikit-image's default); images need at least WIN_SIZE x WIN_SIZE pixels."""


def _as_uint8_batch(images: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """uint8 (B, H, W, C) or (H, W, C), numpy or torch (any device) -> numpy uint8 (B, H, W, C)."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.dtype != np.uint8:
        raise WetokError(f"{name} must be uint8 images (0..255), got {a.dtype}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise WetokError(f"{name} must be (B, H, W, C) uint8, got shape {a.shape}")
    return a


def _pair(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_uint8_batch(reference, "reference"), _as_uint8_batch(test, "test")
    if x.shape != y.shape:
        raise WetokError(f"images differ in shape: {x.shape} vs {y.shape}")
    return x, y


def psnr(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of uint8 images (B, H, W, C) or (H, W, C) -> float64 (B,)
    CPU tensor: 10 * log10(255**2 / MSE) per image; +inf for identical images."""
    x, y = _pair(reference, test)
    with np.errstate(divide="ignore"):  # identical images: MSE 0, PSNR +inf
        values = [peak_signal_noise_ratio(a, b, data_range=DATA_RANGE) for a, b in zip(x, y)]
    return torch.tensor(values, dtype=torch.float64)


def ssim(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of uint8 images (B, H, W, C) or (H, W, C), H and W >= 7 ->
    float64 (B,) CPU tensor, values in [-1, 1]."""
    x, y = _pair(reference, test)
    if min(x.shape[1], x.shape[2]) < WIN_SIZE:
        raise WetokError(f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE} pixels, got {x.shape[1]}x{x.shape[2]}")
    values = [structural_similarity(a, b, data_range=DATA_RANGE, channel_axis=-1) for a, b in zip(x, y)]
    return torch.tensor(values, dtype=torch.float64)
