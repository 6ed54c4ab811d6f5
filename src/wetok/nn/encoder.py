"""The WeTok encoder: image (B, 3, H, W) -> continuous latent (B, C, H/f, W/f)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TokenizerConfig
from .blocks import ResBlock, group_norm


class Encoder(nn.Module):
    """Convolutional encoder with the released models' structure and parameter names.

    3x3 conv in (no bias); per level `num_res_blocks` residual blocks and, between levels, a
    stride-2 3x3 conv (`down.{i}.downsample`); the same number of blocks at the bottom
    (`mid_block`); GroupNorm, SiLU, 1x1 conv to C latent channels.

    Input: float (B, 3, H, W) in [-1, 1], H and W multiples of the downsample factor f.
    Output: float (B, C, H/f, W/f), unbounded.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, n_res = config.channels, config.channel_mult, config.num_res_blocks
        groups = config.norm_groups
        self.conv_in = nn.Conv2d(config.in_channels, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        width = ch
        for level, m in enumerate(mult):
            stage = nn.Module()
            blocks = []
            for _ in range(n_res):
                blocks.append(ResBlock(width, ch * m, groups))
                width = ch * m
            stage.block = nn.ModuleList(blocks)
            if level < len(mult) - 1:
                stage.downsample = nn.Conv2d(width, width, 3, stride=2, padding=1)
            self.down.append(stage)
        self.mid_block = nn.ModuleList(ResBlock(width, width, groups) for _ in range(n_res))
        self.norm_out = group_norm(width, groups=groups)
        self.conv_out = nn.Conv2d(width, config.latent_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                x = block(x)
            if hasattr(stage, "downsample"):
                x = stage.downsample(x)
        for block in self.mid_block:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))
