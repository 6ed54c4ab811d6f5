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
        h = self.conv1(norm_silu(self.norm1, x))
        h = self.conv2(norm_silu(self.norm2, h))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(shortcut) if not h.requires_grad else h + shortcut


def norm_silu(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SiLU(norm(x)), the pair every block starts with: (B, C, H, W) -> same shape, dtype and
    memory layout. Without autograd the SiLU runs in place on the norm's fresh output, which saves
    a full-size allocation and a pass over memory; the values are the same either way. (Eager
    PyTorch has no fused GroupNorm + SiLU kernel; `torch.compile` fuses the two.)"""
    h = norm(x)
    return F.silu(h, inplace=not h.requires_grad)


def depth_to_space(x: torch.Tensor, block: int) -> torch.Tensor:
    """Rearrange channels into space in the released ("DCR") channel order.

    (B, C*block*block, H, W) -> (B, C, H*block, W*block); output channel c at sub-position (i, j)
    comes from input channel (i*block + j)*C + c. (PyTorch's `pixel_shuffle` uses c*block*block +
    i*block + j instead, so the two are not interchangeable.) A channels_last input gives a
    channels_last output (the same values), a contiguous one a contiguous output.
    """
    b, c, h, w = x.shape
    out_c = c // (block * block)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # NHWC in, NHWC out: one copy that keeps the layout the next convolution wants
        nhwc = x.permute(0, 2, 3, 1).reshape(b, h, w, block, block, out_c).permute(0, 1, 3, 2, 4, 5)
        return nhwc.reshape(b, h * block, w * block, out_c).permute(0, 3, 1, 2)
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
    the shift. x (B, channels, H, W), style (B, latent_channels, h, w) -> (B, channels, H, W), of
    x's dtype and memory layout. The style's statistics are taken in float32 whatever the dtype.
    """

    def __init__(self, latent_channels: int, channels: int, norm_groups: int = GROUPNORM_GROUPS) -> None:
        super().__init__()
        self.norm = group_norm(channels, affine=False, groups=norm_groups)
        self.gamma = nn.Linear(latent_channels, channels)
        self.beta = nn.Linear(latent_channels, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        flat = style.flatten(2).float()
        dtype = self.gamma.weight.dtype
        std = (flat.var(dim=-1) + GROUPNORM_EPS).sqrt()
        scale = self.gamma(std.to(dtype))[:, :, None, None]
        shift = self.beta(flat.mean(dim=-1).to(dtype))[:, :, None, None]
        normed = self.norm(x)
        if normed.requires_grad or scale.requires_grad:
            return normed * scale + shift
        return normed.mul_(scale).add_(shift)  # in place: no second full-size tensor, layout kept
