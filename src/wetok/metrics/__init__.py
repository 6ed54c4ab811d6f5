"""Reconstruction metrics: PSNR/SSIM (scikit-image), LPIPS (the `lpips` package; also the
training loss), the FID InceptionV3 (pytorch-fid's blocks), FID statistics and Frechet distance,
and codebook usage. `wetok.metrics.lpips` and `wetok.metrics.inception` import torchvision and
their libraries: import them where they are needed."""

from .fid import GaussianStats, frechet_distance, stats_key
from .psnr_ssim import psnr, ssim
from .usage import TokenUsage

__all__ = ["GaussianStats", "TokenUsage", "frechet_distance", "psnr", "ssim", "stats_key"]
