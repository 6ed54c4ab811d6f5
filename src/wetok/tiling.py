"""Tiled encoding and decoding of large images with bounded memory.

The image (or token grid) is cut into overlapping windows on the token grid; each window goes
through the encoder (or decoder) on its own, and the windows' outputs are blended with linear
ramps across the overlaps (weights sum to one there), so seams do not show.

Memory: the model only ever sees one window of `tile + 2*overlap`-ish pixels; the blended
result (latent for encoding, the float image for decoding) is accumulated on the CPU.

Differences from untiled processing come from the windows' borders (zero padding instead of
neighbouring pixels) and from normalisation statistics: GroupNorm layers see one window, not the
whole image. The decoder's adaptive norms, which are conditioned on the whole latent's mean and
spread, are given the whole latent here, so only the plain GroupNorm statistics differ.
`benchmarks/tiling.py` measures the effect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .errors import WetokError
from .nn.blocks import AdaptiveGroupNorm
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class TileSpec:
    """Window size and overlap, in pixels (rounded to whole token cells of the model).

    Attributes:
        tile: window side in pixels (>= 2 cells).
        overlap: overlap between neighbouring windows in pixels (< tile / 2).
    """

    tile: int = 512
    overlap: int = 128

    def cells(self, downsample: int) -> tuple[int, int]:
        """(window, overlap) in token cells for a model with downsample factor `downsample`."""
        window = max(2, self.tile // downsample)
        overlap = max(1, self.overlap // downsample)
        if overlap * 2 >= window:
            raise WetokError(
                f"tile overlap {self.overlap}px must be less than half the tile ({self.tile}px) "
                f"in whole {downsample}-pixel cells"
            )
        return window, overlap


def axis_windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Windows [start, stop) covering 0..length with the given overlap; the last one is shifted
    back to end at `length` (so it may overlap more). One window when it covers everything."""
    if length <= window:
        return [(0, length)]
    stride = window - overlap
    starts = list(range(0, length - window, stride)) + [length - window]
    return [(s, s + window) for s in starts]


def _ramp(start: int, stop: int, length: int, overlap: int, scale: int) -> torch.Tensor:
    """Blend weights (float32, (stop-start)*scale) for one window along one axis: rising over
    `overlap*scale` samples on a side that has a neighbour, flat 1 at the image border."""
    n = (stop - start) * scale
    ramp_len = overlap * scale
    weights = torch.ones(n)
    rise = (torch.arange(ramp_len, dtype=torch.float32) + 0.5) / ramp_len
    if start > 0:
        weights[:ramp_len] = rise
    if stop < length:
        weights[n - ramp_len :] = torch.minimum(weights[n - ramp_len :], rise.flip(0))
    return weights


def run_tiled(
    fn: Callable[[tuple[slice, slice]], torch.Tensor],
    grid: tuple[int, int],
    window: int,
    overlap: int,
    out_scale: int,
    out_channels: int,
) -> torch.Tensor:
    """Blend `fn` over windows of a `grid` (h, w) of cells.

    `fn((rows, cols))` gets slices in cell units and returns (1, out_channels, rows*out_scale,
    cols*out_scale). Returns the blended float32 (1, out_channels, h*out_scale, w*out_scale) on
    the CPU.
    """
    h, w = grid
    out = torch.zeros(1, out_channels, h * out_scale, w * out_scale)
    total = torch.zeros(h * out_scale, w * out_scale)
    for r0, r1 in axis_windows(h, window, overlap):
        wy = _ramp(r0, r1, h, overlap, out_scale)
        for c0, c1 in axis_windows(w, window, overlap):
            wx = _ramp(c0, c1, w, overlap, out_scale)
            piece = fn((slice(r0, r1), slice(c0, c1))).float().cpu()
            weight = wy[:, None] * wx[None, :]
            rows = slice(r0 * out_scale, r1 * out_scale)
            cols = slice(c0 * out_scale, c1 * out_scale)
            out[:, :, rows, cols] += piece * weight
            total[rows, cols] += weight
    return out / total


@torch.no_grad()
def encode_latent_tiled(model: Tokenizer, image: torch.Tensor, spec: TileSpec = TileSpec()) -> torch.Tensor:
    """Continuous latent of one image in windows: float (1, 3, H, W) in [-1, 1], H and W multiples
    of f -> float32 (1, C, H/f, W/f) on the CPU. Quantize with `model.codes_to_tokens`."""
    f = model.downsample
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-2] % f or image.shape[-1] % f:
        raise WetokError(f"tiled encoding takes one image (1, 3, H, W) with H, W multiples of {f}, got {tuple(image.shape)}")
    window, overlap = spec.cells(f)
    grid = (image.shape[-2] // f, image.shape[-1] // f)

    def encode(cells: tuple[slice, slice]) -> torch.Tensor:
        rows, cols = cells
        tile = image[:, :, rows.start * f : rows.stop * f, cols.start * f : cols.stop * f]
        return model.encode_latent(tile)

    return run_tiled(encode, grid, window, overlap, 1, model.config.latent_channels)


@torch.no_grad()
def encode_tiled(model: Tokenizer, image: torch.Tensor, spec: TileSpec = TileSpec()) -> torch.Tensor:
    """Tokens of one large image: float (1, 3, H, W), H and W multiples of f -> int64 (1, H/f, W/f, G)."""
    return model.codes_to_tokens(encode_latent_tiled(model, image, spec))


@contextmanager
def _whole_latent_style(model: Tokenizer, codes: torch.Tensor) -> Iterator[None]:
    """While active, the decoder's adaptive norms take their statistics from the whole `codes`
    (B, C, h, w), whatever window they are decoding."""
    style = codes.to(model.device, model.dtype)

    def swap(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0], style)

    handles = [m.register_forward_pre_hook(swap) for m in model.decoder.modules() if isinstance(m, AdaptiveGroupNorm)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def decode_tiled(
    model: Tokenizer, tokens: torch.Tensor, spec: TileSpec = TileSpec(), *, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Decode one image's tokens in windows: int (1, h, w, G) -> float32 (1, 3, h*f, w*f) on the
    CPU, clamped to [-1, 1]. `noise` (1, C, h, w) is the generative decoder's noise for the whole
    grid (each window takes its part); required exactly when the model is generative."""
    if tokens.dim() != 4 or tokens.shape[0] != 1:
        raise WetokError(f"tiled decoding takes one image's tokens (1, h, w, G), got {tuple(tokens.shape)}")
    f = model.downsample
    window, overlap = spec.cells(f)
    codes = model.tokens_to_codes(tokens)
    if model.config.generative and noise is None:
        raise WetokError("the generative decoder needs noise for tiled decoding")

    def decode(cells: tuple[slice, slice]) -> torch.Tensor:
        rows, cols = cells
        part = codes[:, :, rows, cols]
        part_noise = None if noise is None else noise[:, :, rows, cols]
        return model.decode_codes(part, noise=part_noise)

    with _whole_latent_style(model, codes):
        image = run_tiled(decode, tuple(codes.shape[-2:]), window, overlap, f, model.config.out_channels)
    return image.clamp(-1, 1)
