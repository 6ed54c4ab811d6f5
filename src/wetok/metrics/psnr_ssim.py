"""PSNR and SSIM on uint8 images, numerically identical to scikit-image.

`psnr` equals `skimage.metrics.peak_signal_noise_ratio(reference, test)` and `ssim` equals
`skimage.metrics.structural_similarity(reference, test, data_range=255, channel_axis=-1)` for
each image of a batch (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, the 3-pixel
border left out, mean over channels), computed in float64 for a whole batch at once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WetokError

DATA_RANGE = 255.0
WIN_SIZE = 7
K1, K2 = 0.01, 0.03


def _as_float64(images: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """uint8 (B, H, W, 3) or (H, W, 3) -> float64 tensor (B, H, W, 3) on the input's device."""
    t = torch.from_numpy(np.require(images, requirements=["C", "W"])) if isinstance(images, np.ndarray) else images  # copies read-only views (PIL)
    if t.dtype != torch.uint8:
        raise WetokError(f"{name} must be uint8 images (0..255), got {t.dtype}")
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4:
        raise WetokError(f"{name} must be (B, H, W, C) uint8, got shape {tuple(t.shape)}")
    return t.to(torch.float64)


def _pair(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_float64(reference, "reference"), _as_float64(test, "test")
    if x.shape != y.shape:
        raise WetokError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x, y.to(x.device)


def psnr(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of uint8 images (B, H, W, C) -> float64 (B,).

    10 * log10(255**2 / MSE) per image; +inf for identical images (as scikit-image).
    """
    x, y = _pair(reference, test)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)


def ssim(reference: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of uint8 images (B, H, W, C), H and W >= 7 -> float64 (B,) in [-1, 1]."""
    x, y = _pair(reference, test)
    if min(x.shape[1], x.shape[2]) < WIN_SIZE:
        raise WetokError(f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE} pixels, got {x.shape[1]}x{x.shape[2]}")
    x, y = x.permute(0, 3, 1, 2).contiguous(), y.permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)

    # scikit-image filters the whole image and then drops a 3-pixel border: the kept values only
    # ever see pixels inside the image, so a "valid" 7x7 box filter gives exactly those values.
    # Separable (7 along rows, then 7 along columns), the five images filtered in one call.
    c = x.shape[1]
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    means = F.avg_pool2d(F.avg_pool2d(stack, (1, WIN_SIZE), stride=1), (WIN_SIZE, 1), stride=1)
    ux, uy, uxx, uyy, uxy = means.split(c, dim=1)
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(dim=1)
