"""The WeTok encoder: image (B, 3, H, W) -> continuous latent (B, C, H/f, W/f).

Both networks are an ordered list of stages, each a function of one activation (B, C, H, W) ->
(B, C', H', W'), and `forward` runs exactly their composition through `run_stages`. Tiled
processing (`wetok.tiling`) runs them itself, resuming each window at a stage whose input it has
kept, through the network's `stage_runner`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..config import TokenizerConfig
from .blocks import ResBlock, group_norm, norm_silu

Stage = Callable[[torch.Tensor], torch.Tensor]
"""One stage of a network: activation in, activation out. A stage never modifies its input."""

StageRunner = Callable[[Sequence[Stage], torch.Tensor], torch.Tensor]
"""Runs a network's stages on the first stage's input and returns the last stage's output."""


def run_stages(stages: Sequence[Stage], x: torch.Tensor) -> torch.Tensor:
    """The composition of `stages` applied to `x`, first to last."""
    for stage in stages:
        x = stage(x)
    return x


def fold_leading(layers: Sequence[tuple[Stage, bool]]) -> list[Stage]:
    """Stages from (layer, leads) pairs in running order: a layer that leads (a cheap one that only
    feeds the next: the input conv, an adaptive norm) runs in one stage with the layer after it.
    The last layer must not lead."""
    stages: list[Stage] = []
    lead: Stage | None = None
    for layer, leads in layers:
        if lead is not None:
            layer, lead = _chained(lead, layer), None
        if leads:
            lead = layer
        else:
            stages.append(layer)
    if lead is not None:
        raise ValueError("the last layer of a network cannot lead into a next one")
    return stages


def _chained(first: Stage, then: Stage) -> Stage:
    """The stage `x -> then(first(x))`."""
    return lambda x: then(first(x))


class Encoder(nn.Module):
    """Convolutional encoder with the released models' structure and parameter names.

    3x3 conv in (no bias); per level `num_res_blocks` residual blocks and, between levels, a
    stride-2 3x3 conv (`down.{i}.downsample`); the same number of blocks at the bottom
    (`mid_block`); GroupNorm, SiLU, 1x1 conv to C latent channels.

    Input: float (B, 3, H, W) in [-1, 1], H and W multiples of the downsample factor f.
    Output: float (B, C, H/f, W/f), unbounded.

    `stages()` lists the computation as stages; `stage_runner`, when set, runs them in place of
    `run_stages` (it must compute the same composition).
    """

    stage_runner: StageRunner | None = None

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

    def stages(self) -> list[Stage]:
        """The forward pass as stages: each residual block (the first with the input conv before
        it) and each downsampling conv in turn, then the head (GroupNorm, SiLU, 1x1 conv). The
        input conv shares the first block's stage as it is cheap: tiled processing then keeps the
        3-channel image rather than its full-width output."""
        layers: list[tuple[Stage, bool]] = [(self.conv_in, True)]
        for level in self.down:
            layers.extend((block, False) for block in level.block)
            if hasattr(level, "downsample"):
                layers.append((level.downsample, False))
        layers.extend((block, False) for block in self.mid_block)
        layers.append((self.head, False))
        return fold_leading(layers)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage: (B, width, h, w) -> latent (B, C, h, w)."""
        return self.conv_out(norm_silu(self.norm_out, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stage_runner or run_stages)(self.stages(), x)
