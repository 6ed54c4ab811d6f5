"""Tiled encoding and decoding of large images with bounded memory.

The image (or token grid) is cut into overlapping windows on the token grid; each window goes
through the encoder (or decoder) on its own, and the windows' outputs are blended with linear
ramps across the overlaps (weights sum to one there), so seams do not show.

Normalisation: every GroupNorm of the untiled network normalises over the whole image; a
window alone would see only itself, and a dark window would be stretched to the same contrast
as a bright one, which costs a trained model several dB. So by default (`stats="image"`) the
whole image's statistics are measured first, layer by layer, one window at a time: for the
k-th GroupNorm the forward pass reaches, every window runs up to that layer (the layers before
it normalising with their already measured whole-image statistics), adds the sum and sum of
squares of its input over the window's own span (each position of the image counted once),
and stops there; then the layer's mean and variance are fixed. The final pass normalises every
window with the fixed statistics, so the tiled result equals the untiled one up to the windows'
border effects. The decoder's adaptive norms, conditioned on the latent's mean and spread, are
given the whole latent. `stats="window"` skips the measurement: each window is normalised on its
own (cheap, and visibly off for a trained model).

Cost: measuring runs one partial pass per GroupNorm, each up to its layer: with L GroupNorms
about L/2 forward passes' worth of compute on top of the final pass, more in an encoder (whose
compute sits in its first, full-resolution layers), less in a decoder (by convolution FLOPs:
37 and 14 passes for the imagenet-d16 encoder and decoder, L = 49 and 54). Memory is that of
one window at a time in both. The blended result (latent, or the
float image) is accumulated on the CPU. `benchmarks/tiling.py` measures peak memory, time and
the difference to untiled processing.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal, NoReturn

import torch
from torch import nn
from tqdm import tqdm

from .errors import WetokError
from .nn.blocks import AdaptiveGroupNorm
from .tokenizer import Tokenizer

Window = tuple[slice, slice]
"""Rows and columns of a window, in token cells."""

STATS_MODES = ("image", "window")


@dataclass(frozen=True)
class TileSpec:
    """Window size and overlap, in pixels (rounded down to whole token cells of the model).

    Attributes:
        tile: window side in pixels (at least 2 cells).
        overlap: overlap between neighbouring windows in pixels (less than half the window).
        stats: normalisation statistics: "image", the whole image's, measured window by window
            (about L/2 extra forward passes for L GroupNorms, see the module's docstring);
            "window", each window its own (no extra passes, less faithful).
        progress: a progress bar (stderr) over the statistics passes: True, False, or None for
            on a terminal only.
    """

    tile: int = 512
    overlap: int = 128
    stats: Literal["image", "window"] = "image"
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.stats not in STATS_MODES:
            raise WetokError(f"tile statistics must be 'image' or 'window', got {self.stats!r}")

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


class _Accumulated(Exception):
    """Raised by the GroupNorm being measured, so that nothing after it runs."""


class WholeImageGroupNorm:
    """Gives every `nn.GroupNorm` of a network the statistics of the whole image, measured one
    window at a time (see `measure_statistics`).

    While `active(network)`: a GroupNorm with fixed statistics normalises with them (per group,
    mean and biased variance, then its own affine if any). The first GroupNorm a forward pass
    reaches without fixed statistics is the one being measured: it adds the float64 sum and sum
    of squares per group of its input over the window's own span (set by `window`, in token
    cells relative to the window; a layer's resolution per cell is read off its input's size)
    and raises `_Accumulated`, so no later layer runs. `fix()` turns the sums into that layer's
    statistics. Layers are measured in the order the forward pass reaches them.
    """

    def __init__(self) -> None:
        self.stats: dict[nn.GroupNorm, tuple[torch.Tensor, torch.Tensor]] = {}
        self.layers = 0
        self.measuring: nn.GroupNorm | None = None
        self.sums: tuple[torch.Tensor, torch.Tensor, int] | None = None
        self.span: Window = (slice(0, 1), slice(0, 1))
        self.window_cells: tuple[int, int] = (1, 1)

    @property
    def complete(self) -> bool:
        """Every hooked GroupNorm has fixed statistics."""
        return len(self.stats) == self.layers

    def window(self, span: Window, window_cells: tuple[int, int]) -> None:
        """The next forward pass is one window of `window_cells` (rows, cols) cells, owning `span`."""
        self.span, self.window_cells = span, window_cells

    def fix(self) -> None:
        """Fix the measured layer's mean and biased variance (float32, per group)."""
        if self.measuring is None or self.sums is None:
            raise RuntimeError("no GroupNorm is being measured")
        total, squares, count = self.sums
        mean = total / count
        self.stats[self.measuring] = (mean.float(), (squares / count - mean * mean).clamp_min(0).float())
        self.measuring, self.sums = None, None

    def _forward(self, module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        """Stands in for `module.forward` while active: normalise with the fixed statistics, or
        measure this layer (which raises `_Accumulated`)."""
        if module in self.stats:
            return self._normalise(module, x)
        self._measure(module, x)

    def _measure(self, module: nn.GroupNorm, x: torch.Tensor) -> NoReturn:
        if self.measuring is None:
            self.measuring = module
        elif module is not self.measuring:
            raise RuntimeError("windows reached the GroupNorm layers in different orders")
        h, w = x.shape[-2:]
        sy, sx = h // self.window_cells[0], w // self.window_cells[1]
        rows, cols = self.span
        own = x[:, :, rows.start * sy : rows.stop * sy, cols.start * sx : cols.stop * sx]
        if self.sums is None:
            zeros = torch.zeros(module.num_groups, dtype=torch.float64, device=x.device)
            self.sums = (zeros, zeros.clone(), 0)
        total, squares, count = self.sums
        for group, part in enumerate(own.chunk(module.num_groups, dim=1)):  # float64 copies of one group at a time
            part = part.double()
            total[group] += part.sum()
            squares[group] += (part * part).sum()
        self.sums = (total, squares, count + own[:, : own.shape[1] // module.num_groups].numel())
        raise _Accumulated

    def _normalise(self, module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        per_group = x.shape[1] // module.num_groups
        mean, var = (t.to(x.device).repeat_interleave(per_group) for t in self.stats[module])
        scale = torch.rsqrt(var + module.eps)
        shift = -mean * scale
        if module.affine:
            scale, shift = scale * module.weight.float(), shift * module.weight.float() + module.bias.float()
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]

    @contextmanager
    def active(self, network: nn.Module) -> Iterator[None]:
        norms = [m for m in network.modules() if isinstance(m, nn.GroupNorm)]
        self.layers = len(norms)
        for m in norms:  # an instance attribute shadows the class's forward (nn.Module calls self.forward)
            m.forward = functools.partial(self._forward, m)
        try:
            yield
        finally:
            for m in norms:
                del m.forward


def measure_statistics(
    fn: Callable[[list[Window]], torch.Tensor],
    windows: list[tuple[Window, Window]],
    window_cells: tuple[int, int],
    norms: WholeImageGroupNorm,
    *,
    progress: bool | None = False,
) -> None:
    """Fix the whole-image statistics of every GroupNorm `fn` reaches, layer by layer.

    `windows` holds (window, own span relative to the window) pairs whose spans partition the
    image; `norms` must be active on the network `fn` runs. Each pass runs every window, one at
    a time, up to the next layer without statistics, then fixes that layer's. `progress`: a bar
    over the passes on stderr (None: on a terminal only).
    """
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    with tqdm(total=norms.layers, desc="tile statistics", unit="layer", leave=False, disable=disable, file=sys.stderr) as bar:
        while not norms.complete:
            for window, span in windows:
                norms.window(span, window_cells)
                try:
                    fn([window])
                except _Accumulated:
                    continue
                if norms.measuring is not None:
                    raise RuntimeError("a window ran through while a GroupNorm was being measured")
                return  # the forward pass reached no layer without statistics (the rest are unused)
            norms.fix()
            bar.update()


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
    progress: bool | None = False,
) -> torch.Tensor:
    """Blend `fn` over windows of a `grid` (h, w) of token cells.

    `fn(windows)` gets a list of windows (slices in cells, all of one size) and returns their
    outputs as a batch (len, out_channels, rows*out_scale, cols*out_scale); it is called with
    one window at a time. Returns the blended float32 (1, out_channels, h*out_scale,
    w*out_scale) on the CPU. With `network` (the module `fn` runs), its GroupNorms normalise
    with the whole image's statistics (`measure_statistics` first); without, each window is
    normalised on its own. `progress`: a bar over the statistics passes (None: on a terminal).
    """
    h, w = grid
    rows, cols = axis_windows(h, window, overlap), axis_windows(w, window, overlap)
    norms = WholeImageGroupNorm()
    with norms.active(network) if network is not None else nullcontext():
        if network is not None:
            spans = [
                ((slice(r0, r1), slice(c0, c1)), (slice(o0 - r0, o1 - r0), slice(p0 - c0, p1 - c0)))
                for (r0, r1), (o0, o1) in zip(rows, owned_spans(rows))
                for (c0, c1), (p0, p1) in zip(cols, owned_spans(cols))
            ]
            measure_statistics(fn, spans, (rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]), norms, progress=progress)
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


def _whole_image(spec: TileSpec, network: nn.Module) -> nn.Module | None:
    """The network whose GroupNorms take whole-image statistics, or None for per-window ones."""
    return network if spec.stats == "image" else None


@torch.no_grad()
def encode_latent_tiled(model: Tokenizer, image: torch.Tensor, spec: TileSpec = TileSpec()) -> torch.Tensor:
    """Continuous latent of one image in windows: float (1, 3, H, W) in [-1, 1], H and W multiples
    of f -> float32 (1, C, H/f, W/f) on the CPU. Quantize with `model.codes_to_tokens`."""
    f = model.downsample
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[-2] % f or image.shape[-1] % f:
        raise WetokError(f"tiled encoding takes one image (1, 3, H, W) with H, W multiples of {f}, got {tuple(image.shape)}")
    window, overlap = spec.cells(f)

    def encode(windows: list[Window]) -> torch.Tensor:
        tiles = [image[:, :, r.start * f : r.stop * f, c.start * f : c.stop * f] for r, c in windows]
        return model.encode_latent(torch.cat(tiles))

    grid = (image.shape[-2] // f, image.shape[-1] // f)
    return run_tiled(
        encode, grid, window, overlap, 1, model.config.latent_channels, network=_whole_image(spec, model.encoder),
        progress=spec.progress,
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
    window, overlap = spec.cells(model.downsample)
    codes = model.tokens_to_codes(tokens)

    def decode(windows: list[Window]) -> torch.Tensor:
        parts = torch.cat([codes[:, :, r, c] for r, c in windows])
        part_noise = None if noise is None else torch.cat([noise[:, :, r, c] for r, c in windows])
        return model.decode_codes(parts, noise=part_noise)

    with _whole_latent_style(model, codes):
        image = run_tiled(
            decode, tuple(codes.shape[-2:]), window, overlap, model.downsample, model.config.out_channels,
            network=_whole_image(spec, model.decoder), progress=spec.progress,
        )
    return image.clamp(-1, 1)
