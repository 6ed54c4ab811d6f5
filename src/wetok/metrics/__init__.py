"""Reconstruction metrics: PSNR/SSIM (scikit-image's numbers), FID statistics and Frechet
distance, the FID InceptionV3, and codebook usage. LPIPS lives in `wetok.lpips` (it is also a
training loss)."""

from .fid import GaussianStats, frechet_distance, stats_key
from .psnr_ssim import psnr, ssim
from .usage import TokenUsage

__all__ = ["GaussianStats", "TokenUsage", "frechet_distance", "psnr", "ssim", "stats_key"]
