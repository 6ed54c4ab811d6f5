"""Layers shared by the encoder and the decoder.

Parameter names (`norm1`, `conv1`, `nin_shortcut`, `gamma`, `beta`, `conv1` of the upsampler) are
those of the released checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GROUPNORM_GROUPS = 32
GROUPNORM_EPS = 1e-6


def group_norm(channels: int, affine: bool = True, groups: int = GROUPNORM_GROUPS) -> nn.GroupNorm:
    """GroupNorm with eps 1e-6 and, as in every released model, 32 groups by default."""
    return nn.GroupNorm(groups, channels, eps=GROUPNORM_EPS, affine=affine)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3 conv) twice, convolutions without bias.

    A 1x1 convolution without bias (`nin_shortcut`) maps the shortcut when the width changes;
    `norm_groups` is the GroupNorms' group count. Input (B, in_channels, H, W) -> output
    (B, out_channels, H, W), same dtype.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int = GROUPNORM_GROUPS) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups=norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels, groups=norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h + shortcut


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """Rearrange channels into space in the released ("DCR") channel order.

    (B, C*block*block, H, W) -> (B, C, H*block, W*block); output channel c at sub-position (i, j)
    comes from input channel (i*block + j)*C + c. (PyTorch's `pixel_shuffle` uses c*block*block +
    i*block + j instead, so the two are not interchangeable.)
    """
    b, c, h, w = x.shape
    out_c = c // (block * block)
    x = x.view(b, block, block, out_c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, out_c, h * block, w * block)


class Upsampler(nn.Module):
    """x2 upsampling: 3x3 conv to 4x channels (with bias), then depth-to-space.

    (B, C, H, W) -> (B, C, 2H, 2W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv1(x), 2)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm (no affine) whose scale and shift come from the quantized latent.

    The latent's per-channel spatial standard deviation (unbiased variance + eps, square root)
    goes through `gamma` to give the scale, its per-channel spatial mean through `beta` to give
    the shift. x (B, channels, H, W), style (B, latent_channels, h, w) -> (B, channels, H, W).
    """

    def __init__(self, latent_channels: int, channels: int, norm_groups: int = GROUPNORM_GROUPS) -> None:
        super().__init__()
        self.norm = group_norm(channels, affine=False, groups=norm_groups)
        self.gamma = nn.Linear(latent_channels, channels)
        self.beta = nn.Linear(latent_channels, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = style.flatten(2)
        std = (flat.var(dim=-1) + GROUPNORM_EPS).sqrt()
        scale = self.gamma(std)[:, :, None, None]
        shift = self.beta(flat.mean(dim=-1))[:, :, None, None]
        return self.norm(x) * scale + shift
