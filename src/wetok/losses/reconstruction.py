"""Pixel reconstruction losses."""

from __future__ import annotations

import torch


def l1_loss(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over every element: (B, 3, H, W) twice -> float32 scalar."""
    return (images.float() - reconstructions.float()).abs().mean()


def l2_loss(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over every element (the error PSNR measures): (B, 3, H, W) twice ->
    float32 scalar."""
    return (images.float() - reconstructions.float()).square().mean()
