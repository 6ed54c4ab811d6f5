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

Resuming: the encoder and decoder are ordered lists of stages (input conv, residual blocks,
down/upsamplers, adaptive norms, head; `Encoder.stages`, `Decoder.stages`). Each window keeps the
input of the stage its last pass stopped in (`ActivationCache`), and the next pass, and the
final one, start there instead of at the input: every stage input is what the pass from the
input computes, so the result is bit-identical to rerunning the network from the input each
time. Kept activations stay in memory up to `TileSpec.cache_bytes` (1 GiB by default), the rest
go to files in a temporary directory, removed at the end (also on an error or an interrupt).

Cost: a residual block runs about three times in all (its first convolution twice while its
GroupNorms are measured, the whole block once to move on) where the untiled pass runs it once,
and the final pass only runs the head; what a pass spills it reads back from the page cache or
the disk. `benchmarks/tiling.py --model default --size 4096 --no-untiled` measures the time
against `stats="window"` and the peak memory. Memory is that of one window at a time plus the
kept activations within the budget. The blended result (latent, or the float image) is
accumulated on the CPU.
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

import torch
from torch import nn
from tqdm import tqdm

from .errors import WetokError
from .nn.blocks import AdaptiveGroupNorm
from .nn.encoder import Stage
from .tokenizer import Tokenizer

Window = tuple[slice, slice]
"""Rows and columns of a window, in token cells."""

STATS_MODES = ("image", "window")

DEFAULT_CACHE_BYTES = 2**30
"""Activations the statistics passes keep in memory by default (1 GiB); the rest go to disk."""


@dataclass(frozen=True)
class TileSpec:
    """Window size and overlap, in pixels (rounded down to whole token cells of the model).

    Attributes:
        tile: window side in pixels (at least 2 cells).
        overlap: overlap between neighbouring windows in pixels (less than half the window).
        stats: normalisation statistics: "image", the whole image's, measured window by window
            (one partial pass per GroupNorm, each resuming where the last stopped: see the
            module's docstring); "window", each window its own (no extra passes, less faithful).
        progress: a progress bar (stderr) over the statistics passes: True, False, or None for
            on a terminal only.
        cache_bytes: with stats="image", bytes of window activations kept in memory between
            passes (default 1 GiB); beyond it they go to a temporary directory (`tempfile`'s,
            $TMPDIR), removed at the end. 0 keeps all of them on disk.
    """

    tile: int = 512
    overlap: int = 128
    stats: Literal["image", "window"] = "image"
    progress: bool | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES

    def __post_init__(self) -> None:
        for name, least in (("tile", 1), ("overlap", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise WetokError(f"the tile {name} must be a whole number of pixels >= {least}, got {value!r}")
        if self.stats not in STATS_MODES:
            raise WetokError(f"tile statistics must be 'image' or 'window', got {self.stats!r}")
        if isinstance(self.cache_bytes, bool) or not isinstance(self.cache_bytes, int) or self.cache_bytes < 0:
            raise WetokError(f"the tile cache budget must be a whole number of bytes >= 0, got {self.cache_bytes!r}")

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
        parts = own.chunk(module.num_groups, dim=1)
        # one group at a time in float64, in two buffers reused across the groups (each laid out as
        # `part.double()` would be): fresh full-size allocations would cost page faults each time
        wide = torch.empty_like(parts[0], dtype=torch.float64)
        square = torch.empty_like(wide)
        for group, part in enumerate(parts):
            wide.copy_(part)
            total[group] += wide.sum()
            squares[group] += torch.mul(wide, wide, out=square).sum()
        self.sums = (total, squares, count + parts[0].numel())
        raise _Accumulated

    def _normalise(self, module: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        per_group = x.shape[1] // module.num_groups
        mean, var = (t.to(x.device).repeat_interleave(per_group) for t in self.stats[module])
        scale = torch.rsqrt(var + module.eps)
        shift = -mean * scale
        if module.affine:
            scale, shift = scale * module.weight.float(), shift * module.weight.float() + module.bias.float()
        out = torch.mul(x, scale.to(x.dtype)[None, :, None, None], out=torch.empty_like(x))  # x's layout
        return out.add_(shift.to(x.dtype)[None, :, None, None])  # in place: no second full-size tensor

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


@dataclass(frozen=True)
class _Spilled:
    """A kept activation written to `path`: its storage's bytes, and how the tensor views them."""

    path: Path
    nbytes: int
    dtype: torch.dtype
    device: torch.device
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class ActivationCache:
    """Per window, the input of the stage the window's last pass stopped in, so that the next
    pass starts there (see the module's docstring).

    While `active(network)`, the network's stages run through `run` (its `stage_runner`). Before
    each forward pass set `window` to the index of the window it runs. A pass starts at the
    window's kept stage (stage 0 and the given input at first); when a stage raises
    `_Accumulated` (the GroupNorm being measured), that stage's input is kept for the window,
    replacing the one kept before. Kept activations are held as they are (device, dtype, memory
    layout) while the held ones' storage bytes stay within `budget`; the others are written to a
    temporary directory, created when first needed and removed when `active` ends, and read back
    into freshly allocated storage with the same strides. Stages must not modify their inputs.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.window = 0
        self.held = 0
        self.kept: dict[int, tuple[int, torch.Tensor | _Spilled]] = {}
        self.directory: Path | None = None

    @property
    def spilled(self) -> int:
        """How many windows' activations are on disk now."""
        return sum(isinstance(value, _Spilled) for _, value in self.kept.values())

    def run(self, stages: Sequence[Stage], x: torch.Tensor) -> torch.Tensor:
        """Run `stages` for window `self.window`, from its kept stage input if any (else from `x`)."""
        start, kept = self.kept.get(self.window, (0, x))
        x = self._load(kept) if isinstance(kept, _Spilled) else kept
        del kept
        for index in range(start, len(stages)):
            try:
                y = stages[index](x)
            except _Accumulated:
                if index != start:
                    self._keep(index, x)
                raise
            x = y
        return x

    def drop(self, window: int) -> None:
        """Forget what is kept for `window` (freeing its memory or file)."""
        entry = self.kept.pop(window, None)
        if entry is None:
            return
        value = entry[1]
        if isinstance(value, _Spilled):
            value.path.unlink(missing_ok=True)
        else:
            self.held -= value.untyped_storage().nbytes()

    def _keep(self, index: int, x: torch.Tensor) -> None:
        self.drop(self.window)
        nbytes = x.untyped_storage().nbytes()
        if self.held + nbytes <= self.budget:
            self.kept[self.window] = (index, x)
            self.held += nbytes
        else:
            self.kept[self.window] = (index, self._spill(x))

    def _spill(self, x: torch.Tensor) -> _Spilled:
        storage = x.untyped_storage()
        if self.directory is None:
            try:
                self.directory = Path(tempfile.mkdtemp(prefix="wetok-tiles-"))
            except OSError as e:
                raise WetokError(f"cannot create a temporary directory for tile activations: {e}") from None
        path = self.directory / f"window-{self.window}.bin"
        raw = torch.empty(0, dtype=torch.uint8).set_(storage.cpu() if storage.device.type != "cpu" else storage)
        try:
            with open(path, "wb") as fh:
                fh.write(raw.numpy())
        except OSError as e:
            path.unlink(missing_ok=True)
            raise WetokError(
                f"cannot write tile activations to {self.directory}: {e.strerror or e} "
                "(free space there, set TMPDIR to another folder, or raise the tile cache budget)"
            ) from None
        return _Spilled(path, storage.nbytes(), x.dtype, x.device, x.storage_offset(), tuple(x.shape), tuple(x.stride()))

    def _load(self, spilled: _Spilled) -> torch.Tensor:
        raw = torch.empty(spilled.nbytes, dtype=torch.uint8)
        try:
            with open(spilled.path, "rb") as fh:
                count = fh.readinto(raw.numpy())
        except OSError as e:
            raise WetokError(f"cannot read tile activations back from {spilled.path}: {e.strerror or e}") from None
        if count != spilled.nbytes:
            raise WetokError(f"tile activations in {spilled.path} are truncated ({count} of {spilled.nbytes} bytes)")
        storage = raw.to(spilled.device).untyped_storage()
        return torch.empty(0, dtype=spilled.dtype, device=spilled.device).set_(
            storage, spilled.offset, spilled.size, spilled.stride
        )

    @contextmanager
    def active(self, network: nn.Module) -> Iterator[None]:
        """Run `network`'s stages through `run` (a network without `stage_runner` is left as it
        is: every pass starts at its input); remove the spill directory at the end."""
        staged = hasattr(network, "stage_runner")
        if staged:
            network.stage_runner = self.run
        try:
            yield
        finally:
            if staged:
                del network.stage_runner
            self.kept.clear()
            self.held = 0
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None


def measure_statistics(
    fn: Callable[[Window], torch.Tensor],
    windows: list[tuple[Window, Window]],
    window_cells: tuple[int, int],
    norms: WholeImageGroupNorm,
    cache: ActivationCache,
    *,
    progress: bool | None = False,
) -> None:
    """Fix the whole-image statistics of every GroupNorm `fn` reaches, layer by layer.

    `windows` holds (window, own span relative to the window) pairs whose spans partition the
    image; `norms` and `cache` must be active on the network `fn` runs. Each pass runs every
    window, one at a time, up to the next layer without statistics (resuming where the window's
    last pass stopped), then fixes that layer's. `progress`: a bar over the passes on stderr
    (None: on a terminal only).
    """
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    with tqdm(total=norms.layers, desc="tile statistics", unit="layer", leave=False, disable=disable, file=sys.stderr) as bar:
        while not norms.complete:
            for index, (window, span) in enumerate(windows):
                norms.window(span, window_cells)
                cache.window = index
                try:
                    fn(window)
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
    fn: Callable[[Window], torch.Tensor],
    grid: tuple[int, int],
    window: int,
    overlap: int,
    out_scale: int,
    out_channels: int,
    *,
    network: nn.Module | None = None,
    progress: bool | None = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> torch.Tensor:
    """Blend `fn` over windows of a `grid` (h, w) of token cells.

    `fn(window)` gets one window (slices in cells) and returns its output, a batch of one
    (1, out_channels, rows*out_scale, cols*out_scale). Returns the blended float32 (1,
    out_channels, h*out_scale, w*out_scale) on the CPU. With `network` (the module `fn` runs),
    its GroupNorms normalise with the whole image's statistics (`measure_statistics` first; the
    passes resume at kept stage inputs when the network has `stage_runner`, keeping up to
    `cache_bytes` of them in memory); without, each window is normalised on its own.
    `progress`: a bar over the statistics passes (None: on a terminal).
    """
    h, w = grid
    rows, cols = axis_windows(h, window, overlap), axis_windows(w, window, overlap)
    windows = [
        ((slice(r0, r1), slice(c0, c1)), (slice(o0 - r0, o1 - r0), slice(p0 - c0, p1 - c0)))
        for (r0, r1), (o0, o1) in zip(rows, owned_spans(rows))
        for (c0, c1), (p0, p1) in zip(cols, owned_spans(cols))
    ]
    norms, cache = WholeImageGroupNorm(), ActivationCache(cache_bytes)
    with ExitStack() as stack:
        if network is not None:
            stack.enter_context(norms.active(network))
            stack.enter_context(cache.active(network))
            cells = (rows[0][1] - rows[0][0], cols[0][1] - cols[0][0])
            measure_statistics(fn, windows, cells, norms, cache, progress=progress)
        out = torch.zeros(1, out_channels, h * out_scale, w * out_scale)
        total = torch.zeros(h * out_scale, w * out_scale)
        for index, ((rs, cs), _) in enumerate(windows):
            cache.window = index
            piece = fn((rs, cs)).float().cpu()
            cache.drop(index)
            wy, wx = _ramp(rs.start, rs.stop, h, overlap, out_scale), _ramp(cs.start, cs.stop, w, overlap, out_scale)
            weight = wy[:, None] * wx[None, :]
            rs, cs = slice(rs.start * out_scale, rs.stop * out_scale), slice(cs.start * out_scale, cs.stop * out_scale)
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

    def encode(window: Window) -> torch.Tensor:
        r, c = window
        return model.encode_latent(image[:, :, r.start * f : r.stop * f, c.start * f : c.stop * f].contiguous())

    grid = (image.shape[-2] // f, image.shape[-1] // f)
    return run_tiled(
        encode, grid, window, overlap, 1, model.config.latent_channels, network=_whole_image(spec, model.encoder),
        progress=spec.progress, cache_bytes=spec.cache_bytes,
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

    def decode(window: Window) -> torch.Tensor:
        r, c = window
        part_noise = None if noise is None else noise[:, :, r, c].contiguous()
        return model.decode_codes(codes[:, :, r, c].contiguous(), noise=part_noise)

    with _whole_latent_style(model, codes):
        image = run_tiled(
            decode, tuple(codes.shape[-2:]), window, overlap, model.downsample, model.config.out_channels,
            network=_whole_image(spec, model.decoder), progress=spec.progress, cache_bytes=spec.cache_bytes,
        )
    return image.clamp(-1, 1)
