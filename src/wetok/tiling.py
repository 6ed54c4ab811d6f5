"""Tiled encoding and decoding of large images with bounded memory.

The image (or token grid) is cut into overlapping windows on the token grid; each window goes
through the encoder (or decoder) on its own, and the windows' outputs are blended with linear
ramps across the overlaps (weights sum to one there), so seams do not show.

Normalisation: every GroupNorm of the untiled network normalises over the whole image; a
window alone would see only itself, and a dark window would be stretched to the same contrast
as a bright one. So first a statistics pass runs up to `stats_windows` windows as one batch,
with every GroupNorm normalising by the statistics pooled over the batch's windows (each
window contributing its own span of the image, not the parts it shares with a neighbour);
those pooled statistics are kept, and the final pass normalises each window with them. When
all windows fit in the statistics batch, the pooled statistics are the whole image's, up to
the windows' border effects. The decoder's adaptive norms, conditioned on the latent's mean
and spread, are given the whole latent.

Memory: the model sees `stats_windows` windows at once in the statistics pass and one window
in the final pass; the blended result (latent, or the float image) is accumulated on the CPU.
`benchmarks/tiling.py` measures peak memory and the difference to untiled processing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .errors import WetokError
from .nn.blocks import AdaptiveGroupNorm
from .tokenizer import Tokenizer

Window = tuple[slice, slice]
"""Rows and columns of a window, in token cells."""


@dataclass(frozen=True)
class TileSpec:
    """Window size and overlap, in pixels (rounded down to whole token cells of the model).

    Attributes:
        tile: window side in pixels (at least 2 cells).
        overlap: overlap between neighbouring windows in pixels (less than half the window).
        stats_windows: at most this many windows in the statistics pass (0: no statistics
            pass, each window normalised on its own). Memory grows with it.
    """

    tile: int = 512
    overlap: int = 128
    stats_windows: int = 4

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
    """Windows [start, stop) covering 0..length, all of size `window`, evenly spaced so that
    neighbours overlap by at least `overlap`; one window when it covers everything."""
    if length <= window:
        return [(0, length)]
    count = -(-(length - overlap) // (window - overlap))
    starts = [round(i * (length - window) / (count - 1)) for i in range(count)]
    return [(s, s + window) for s in starts]


def owned_spans(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A partition of the axis among the windows: each boundary lies in the middle of the
    overlap of two neighbours."""
    bounds = [0] + [(windows[i + 1][0] + windows[i][1]) // 2 for i in range(len(windows) - 1)] + [windows[-1][1]]
    return [(bounds[i], bounds[i + 1]) for i in range(len(windows))]


def _spread(count: int, keep: int) -> list[int]:
    """`keep` indices out of range(count), evenly spread, first and last included."""
    if keep >= count:
        return list(range(count))
    if keep == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def stats_sample(rows: list[tuple[int, int]], cols: list[tuple[int, int]], limit: int) -> list[tuple[Window, Window]]:
    """Up to `limit` (window, own span) pairs spread over the grid of windows, for the statistics
    pass. Spans are relative to their window."""
    own_rows, own_cols = owned_spans(rows), owned_spans(cols)
    keep_r = max(1, min(len(rows), int((limit * len(rows) / len(cols)) ** 0.5)))
    keep_c = max(1, min(len(cols), limit // keep_r))
    picked = []
    for i in _spread(len(rows), keep_r):
        for j in _spread(len(cols), keep_c):
            (r0, r1), (o0, o1) = rows[i], own_rows[i]
            (c0, c1), (p0, p1) = cols[j], own_cols[j]
            picked.append(((slice(r0, r1), slice(c0, c1)), (slice(o0 - r0, o1 - r0), slice(p0 - c0, p1 - c0))))
    return picked


class PooledGroupNorm:
    """Replaces the statistics of every `nn.GroupNorm` in a network while active.

    Pooling (`pool(spans)` before a batched forward): each GroupNorm computes, per group, the
    mean and (biased) variance of its input over the given span of every batch item together,
    normalises the whole batch with them, and keeps them. Fixed (after `fix()`): each
    GroupNorm normalises with the kept statistics. Spans are in token cells relative to the
    window; a layer's resolution per cell is read off its input's size.
    """

    def __init__(self) -> None:
        self.stats: dict[nn.GroupNorm, tuple[torch.Tensor, torch.Tensor]] = {}
        self.spans: list[Window] | None = None
        self.window_cells: tuple[int, int] = (1, 1)

    def pool(self, spans: list[Window], window_cells: tuple[int, int]) -> None:
        self.spans, self.window_cells = spans, window_cells

    def fix(self) -> None:
        self.spans = None

    def _hook(self, module: nn.GroupNorm, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        b, c, h, w = x.shape
        grouped = x.view(b, module.num_groups, c // module.num_groups, h, w)
        if self.spans is not None:
            sy, sx = h // self.window_cells[0], w // self.window_cells[1]
            total = torch.zeros(module.num_groups, dtype=torch.float64, device=x.device)
            squares = torch.zeros_like(total)
            count = 0
            for item, (rows, cols) in enumerate(self.spans):
                part = grouped[item, :, :, rows.start * sy : rows.stop * sy, cols.start * sx : cols.stop * sx].double()
                total += part.sum((1, 2, 3))
                squares += (part * part).sum((1, 2, 3))
                count += part[0].numel()
            mean = total / count
            self.stats[module] = (mean.float(), (squares / count - mean * mean).clamp_min(0).float())
        if module not in self.stats:
            return output
        mean, var = (t.to(x.device, x.dtype)[None, :, None, None, None] for t in self.stats[module])
        out = ((grouped - mean) * torch.rsqrt(var + module.eps)).view(b, c, h, w)
        if module.affine:
            out = out * module.weight[None, :, None, None] + module.bias[None, :, None, None]
        return out

    @contextmanager
    def active(self, network: nn.Module) -> Iterator[None]:
        handles = [m.register_forward_hook(self._hook) for m in network.modules() if isinstance(m, nn.GroupNorm)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


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
    fn: Callable[[list[Window]], torch.Tensor],
    grid: tuple[int, int],
    window: int,
    overlap: int,
    out_scale: int,
    out_channels: int,
    *,
    network: nn.Module | None = None,
    stats_windows: int = 0,
) -> torch.Tensor:
    """Blend `fn` over windows of a `grid` (h, w) of token cells.

    `fn(windows)` gets a list of windows (slices in cells, all of one size) and returns their
    outputs as a batch (len, out_channels, rows*out_scale, cols*out_scale). Returns the blended
    float32 (1, out_channels, h*out_scale, w*out_scale) on the CPU. With `network` (the module
    `fn` runs) and `stats_windows` > 0, a statistics pass first pools the GroupNorm statistics
    of up to `stats_windows` windows (`PooledGroupNorm`), and the final pass uses them.
    """
    h, w = grid
    rows, cols = axis_windows(h, window, overlap), axis_windows(w, window, overlap)
    pooled = PooledGroupNorm()
    with pooled.active(network) if network is not None and stats_windows > 0 else _nothing():
        if network is not None and stats_windows > 0:
            sample = stats_sample(rows, cols, stats_windows)
            (r, c), _ = sample[0]
            pooled.pool([span for _, span in sample], (r.stop - r.start, c.stop - c.start))
            fn([win for win, _ in sample])
            pooled.fix()
        out = torch.zeros(1, out_channels, h * out_scale, w * out_scale)
        total = torch.zeros(h * out_scale, w * out_scale)
        for r0, r1 in rows:
            wy = _ramp(r0, r1, h, overlap, out_scale)
            for c0, c1 in cols:
                wx = _ramp(c0, c1, w, overlap, out_scale)
                piece = fn([(slice(r0, r1), slice(c0, c1))]).float().cpu()
                weight = wy[:, None] * wx[None, :]
                rs, cs = slice(r0 * out_scale, r1 * out_scale), slice(c0 * out_scale, c1 * out_scale)
                out[:, :, rs, cs] += piece * weight
                total[rs, cs] += weight
    return out / total


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _check_spec(model: Tokenizer, spec: TileSpec) -> tuple[int, int]:
    return spec.cells(model.downsample)


@torch.no_grad()
def encode_latent_tiled(model: Tokenizer, image: torch.Tensor, spec: TileSpec = TileSpec()) -> torch.Tensor:
    """Continuous latent of one image in windows: float (1, 3, H, W) in [-1, 1], H and W multiples
    of f -> float32 (1, C, H/f, W/f) on the CPU. Quantize with `model.codes_to_tokens`."""
    f = model.downsample
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-2] % f or image.shape[-1] % f:
        raise WetokError(f"tiled encoding takes one image (1, 3, H, W) with H, W multiples of {f}, got {tuple(image.shape)}")
    window, overlap = _check_spec(model, spec)

    def encode(windows: list[Window]) -> torch.Tensor:
        tiles = [image[:, :, r.start * f : r.stop * f, c.start * f : c.stop * f] for r, c in windows]
        return model.encode_latent(torch.cat(tiles))

    grid = (image.shape[-2] // f, image.shape[-1] // f)
    return run_tiled(
        encode, grid, window, overlap, 1, model.config.latent_channels, network=model.encoder, stats_windows=spec.stats_windows
    )


@torch.no_grad()
def encode_tiled(model: Tokenizer, image: torch.Tensor, spec: TileSpec = TileSpec()) -> torch.Tensor:
    """Tokens of one large image: float (1, 3, H, W), H and W multiples of f -> int64 (1, H/f, W/f, G)."""
    return model.codes_to_tokens(encode_latent_tiled(model, image, spec))


@contextmanager
def _whole_latent_style(model: Tokenizer, codes: torch.Tensor) -> Iterator[None]:
    """While active, the decoder's adaptive norms take their statistics from the whole `codes`
    (1, C, h, w), whatever window they are decoding."""
    style = codes.to(model.device, model.dtype)

    def swap(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0], style.expand(args[0].shape[0], *style.shape[1:]))

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
    if model.config.generative and noise is None:
        raise WetokError("the generative decoder needs noise for tiled decoding")
    window, overlap = _check_spec(model, spec)
    codes = model.tokens_to_codes(tokens)

    def decode(windows: list[Window]) -> torch.Tensor:
        parts = torch.cat([codes[:, :, r, c] for r, c in windows])
        part_noise = None if noise is None else torch.cat([noise[:, :, r, c] for r, c in windows])
        return model.decode_codes(parts, noise=part_noise)

    with _whole_latent_style(model, codes):
        image = run_tiled(
            decode, tuple(codes.shape[-2:]), window, overlap, model.downsample, model.config.out_channels,
            network=model.decoder, stats_windows=spec.stats_windows,
        )
    return image.clamp(-1, 1)
