"""The WeTok decoder and generative decoder: quantized latent (B, C, h, w) -> image (B, 3, h*f, w*f)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TokenizerConfig
from .blocks import AdaptiveGroupNorm, ResBlock, Upsampler, group_norm, norm_silu
from .encoder import Stage, StageRunner, fold_leading, run_stages


class Decoder(nn.Module):
    """Convolutional decoder with the released models' structure and parameter names.

    3x3 conv in; `num_res_blocks` residual blocks (`mid_block`); then for each level from the
    deepest: an adaptive GroupNorm conditioned on the quantized latent (`adaptive.{level}`), the
    level's residual blocks (`up.{level}.block`) and, except at level 0, a x2 upsampler
    (`up.{level}.upsample`); GroupNorm, SiLU, 3x3 conv to RGB.

    With `config.generative` (the generative decoder, GD) the input conv takes 2C channels: the
    quantized latent concatenated on the channel axis with standard-normal noise of its shape.
    The adaptive norms are conditioned on the quantized latent alone.

    `stages(quantized)` lists the computation as stages (the first takes the input conv's input);
    `stage_runner`, when set, runs them in place of `run_stages` (it must compute the same
    composition).
    """

    stage_runner: StageRunner | None = None

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
            x = torch.cat([quantized, noise.to(quantized.dtype)], dim=1)
        else:
            if noise is not None:
                raise ValueError("this decoder is not generative: it takes no noise")
            x = quantized
        return (self.stage_runner or run_stages)(self.stages(quantized), x)

    def stages(self, quantized: torch.Tensor) -> list[Stage]:
        """The forward pass as stages, for the quantized latent (B, C, h, w) that conditions the
        adaptive norms: each residual block and each upsampler in turn, then the head (GroupNorm,
        SiLU, 3x3 conv to RGB). The input conv (on the latent, or latent and noise concatenated)
        and each adaptive norm share the stage of the block after them, as they are cheap: tiled
        processing then keeps their input (the latent; an upsampler's output) rather than a
        second activation of the same size."""
        layers: list[tuple[Stage, bool]] = [(self.conv_in, True), *((block, False) for block in self.mid_block)]
        for level in reversed(range(len(self.up))):
            layers.append((_conditioned(self.adaptive[level], quantized), True))
            layers.extend((block, False) for block in self.up[level].block)
            if hasattr(self.up[level], "upsample"):
                layers.append((self.up[level].upsample, False))
        layers.append((self.head, False))
        return fold_leading(layers)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage: (B, width, H, W) -> image (B, 3, H, W)."""
        return self.conv_out(norm_silu(self.norm_out, x))


def _conditioned(norm: AdaptiveGroupNorm, style: torch.Tensor) -> Stage:
    """The stage `x -> norm(x, style)` (style passed positionally, as forward hooks see it)."""
    return lambda x: norm(x, style)
