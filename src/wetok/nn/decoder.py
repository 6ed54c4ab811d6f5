"""The WeTok decoder and generative decoder: quantized latent (B, C, h, w) -> image (B, 3, h*f, w*f)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TokenizerConfig
from .blocks import AdaptiveGroupNorm, ResBlock, Upsampler, group_norm


class Decoder(nn.Module):
    """Convolutional decoder with the released models' structure and parameter names.

    3x3 conv in; `num_res_blocks` residual blocks (`mid_block`); then for each level from the
    deepest: an adaptive GroupNorm conditioned on the quantized latent (`adaptive.{level}`), the
    level's residual blocks (`up.{level}.block`) and, except at level 0, a x2 upsampler
    (`up.{level}.upsample`); GroupNorm, SiLU, 3x3 conv to RGB.

    With `config.generative` (the generative decoder, GD) the input conv takes 2C channels: the
    quantized latent concatenated on the channel axis with standard-normal noise of its shape.
    The adaptive norms are conditioned on the quantized latent alone.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, n_res = config.channels, config.channel_mult, config.num_res_blocks
        latent, groups = config.latent_channels, config.norm_groups
        self.generative = config.generative
        width = ch * mult[-1]
        self.conv_in = nn.Conv2d(latent * (2 if config.generative else 1), width, 3, padding=1)
        self.mid_block = nn.ModuleList(ResBlock(width, width, groups) for _ in range(n_res))
        up: list[nn.Module] = [nn.Module() for _ in mult]
        adaptive: list[nn.Module] = [nn.Module() for _ in mult]
        for level in reversed(range(len(mult))):
            adaptive[level] = AdaptiveGroupNorm(latent, width, groups)
            blocks = []
            for _ in range(n_res):
                blocks.append(ResBlock(width, ch * mult[level], groups))
                width = ch * mult[level]
            up[level].block = nn.ModuleList(blocks)
            if level > 0:
                up[level].upsample = Upsampler(width)
        self.up = nn.ModuleList(up)
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = group_norm(width, groups=groups)
        self.conv_out = nn.Conv2d(width, config.out_channels, 3, padding=1)

    def forward(self, quantized: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Decode.

        Args:
            quantized: float (B, C, h, w), values in {-1, +1} (or straight-through estimates).
            noise: float (B, C, h, w) standard-normal noise; required for the generative decoder,
                must be None for the plain decoder.

        Returns:
            float (B, 3, h*f, w*f); approximately in [-1, 1] (not clamped).
        """
        if self.generative:
            if noise is None:
                raise ValueError("the generative decoder needs a noise tensor of the latent's shape")
            if noise.shape != quantized.shape:
                raise ValueError(f"noise shape {tuple(noise.shape)} differs from latent shape {tuple(quantized.shape)}")
            x = self.conv_in(torch.cat([quantized, noise.to(quantized.dtype)], dim=1))
        else:
            if noise is not None:
                raise ValueError("this decoder is not generative: it takes no noise")
            x = self.conv_in(quantized)
        for block in self.mid_block:
            x = block(x)
        for level in reversed(range(len(self.up))):
            x = self.adaptive[level](x, quantized)
            stage = self.up[level]
            for block in stage.block:
                x = block(x)
            if hasattr(stage, "upsample"):
                x = stage.upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))
