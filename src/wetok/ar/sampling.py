"""Sampling from the generator: static key/value caches, classifier-free guidance as a doubled
batch, temperature / top-k / top-p per sub-token, and one random stream per image.

What the original computes, per position and sub-token g (`sample_WeTok`): guided logits
uncond + (cond - uncond) * cfg_scale[g], divided by temperature[g], filtered by top_k[g] (0: off;
ties with the k-th value kept) and top_p[g] (1: off; the smallest set of most likely values whose
probability reaches top_p, at least one), a softmax, and a draw; the drawn sub-token feeds both
halves of the doubled batch. wetok computes the same with two differences that change no
distribution: the factorized blocks' cache is allocated once, not at every position, and the draw
is the inverse of the cumulative distribution at a uniform number taken from the image's own
stream (`torch.multinomial` takes its numbers from one stream for the whole batch, so a sample
would depend on the batch it was drawn in).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import WetokError
from ..tokenizer import MAX_SEED
from .model import Transformer, check_labels

PerSubToken = float | Sequence[float]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings, one value per sub-token (tuples of length G).

    Attributes:
        cfg_scale: guidance scale, >= 0 (1: no guidance for that sub-token; the batch is doubled
            when any sub-token is guided).
        temperature: > 0.
        top_k: 0 (off) or the number of most likely values kept.
        top_p: in (0, 1]; 1 is off.
    """

    cfg_scale: tuple[float, ...]
    temperature: tuple[float, ...]
    top_k: tuple[int, ...]
    top_p: tuple[float, ...]

    @classmethod
    def of(cls, groups: int, *, cfg_scale: PerSubToken = 1.0, temperature: PerSubToken = 1.0,
           top_k: int | Sequence[int] = 0, top_p: PerSubToken = 1.0) -> SamplingSettings:
        """Settings for G = `groups` sub-tokens from numbers (the same for every sub-token) or
        sequences of G numbers; one `WetokError` naming the setting otherwise."""
        cfg = _per_group(cfg_scale, groups, "cfg_scale", lambda v: v >= 0, ">= 0")
        temp = _per_group(temperature, groups, "temperature", lambda v: v > 0, "> 0")
        k = _per_group(top_k, groups, "top_k", lambda v: v >= 0 and float(v).is_integer(), "a whole number >= 0")
        p = _per_group(top_p, groups, "top_p", lambda v: 0 < v <= 1, "in (0, 1]")
        return cls(cfg, temp, tuple(int(v) for v in k), p)

    @property
    def guided(self) -> bool:
        return any(s != 1.0 for s in self.cfg_scale)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"cfg_scale": list(self.cfg_scale), "temperature": list(self.temperature), "top_k": list(self.top_k),
                "top_p": list(self.top_p)}


def _per_group(value: object, groups: int, name: str, ok, rule: str) -> tuple[float, ...]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * groups
    if len(values) != groups:
        raise WetokError(f"{name}: give one value or {groups} (one per sub-token), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            raise WetokError(f"{name} must be {rule}, got {v!r}")
    return tuple(float(v) for v in values)


SAMPLING_STREAM = 2**63
"""Image i's sampling generator is seeded with seeds[i] + 2**63: a stream of its own, apart from
the generative decoder's noise, which `seeded_noise` draws from seeds[i] itself (in [0, 2**63))."""


def image_uniforms(seeds: Sequence[int], count: int) -> torch.Tensor:
    """`count` uniform numbers in (0, 1] per image, float64 (B, count): image i's from a CPU
    `torch.Generator` seeded with seeds[i] + `SAMPLING_STREAM`, so they depend on that seed alone.
    Seeds are integers in [0, 2**63) (`MAX_SEED`)."""
    out = torch.empty(len(seeds), count, dtype=torch.float64)
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not hasattr(type(seed), "__index__") or not 0 <= int(seed) <= MAX_SEED:
            raise WetokError(f"sampling seed {seed!r} is not an integer in 0..{MAX_SEED} (image i of a run uses seed + i)")
        generator = torch.Generator().manual_seed(int(seed) + SAMPLING_STREAM)
        out[i] = 1.0 - torch.rand(count, generator=generator, dtype=torch.float64)
    return out


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits (B, V) with the values outside top-k and outside the top-p nucleus set to -inf (the
    original's rule: values below the k-th largest removed; in decreasing order, those after the
    first whose cumulative probability exceeds top_p removed)."""
    vocab = logits.shape[-1]
    if top_k > 0 and top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        beyond = torch.softmax(ordered, dim=-1).cumsum(dim=-1) > top_p
        beyond[..., 1:] = beyond[..., :-1].clone()
        beyond[..., 0] = False
        logits = logits.masked_fill(beyond.scatter(-1, order, beyond), float("-inf"))
    return logits


def draw(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One value per row of logits (B, V) from softmax(logits), by inverting the cumulative
    distribution at uniforms (B,) in (0, 1] -> int64 (B,). A value of probability zero is never drawn."""
    cdf = torch.softmax(logits.float(), dim=-1).double().cumsum(dim=-1)
    target = (uniforms.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


def guide(logits: torch.Tensor, scale: float, guided: bool) -> torch.Tensor:
    """Logits (2B, V) of [conditional; unconditional] -> uncond + (cond - uncond) * scale (B, V);
    a batch that is not doubled is returned as it is."""
    if not guided:
        return logits
    cond, uncond = logits.chunk(2)
    return cond if scale == 1.0 else uncond + (cond - uncond) * scale


@torch.no_grad()
def generate(
    model: Transformer,
    labels: torch.Tensor | Sequence[int],
    *,
    cfg_scale: PerSubToken = 1.0,
    temperature: PerSubToken = 1.0,
    top_k: int | Sequence[int] = 0,
    top_p: PerSubToken = 1.0,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """Sample token grids for class labels.

    Args:
        model: the generator (put in eval mode for the call).
        labels: int (B,) in [0, num_classes) (num_classes: unconditional).
        cfg_scale, temperature, top_k, top_p: a number, or one per sub-token (`SamplingSettings`).
            The released WeTok-AR-XL used cfg_scale (1.75, 1.8, 2.0, 2.0), top_k 0, top_p 1.0,
            temperature 1.0.
        seeds: one seed per image: image i's randomness comes from seeds[i] alone, so its tokens
            do not depend on the batch it is sampled in (the CLI gives image i of a run seed + i).
        generator: otherwise, the random numbers of the whole batch come from this generator
            (or, with neither, from the global RNG).

    Returns:
        tokens int64 (B, grid, grid, G) on the model's device, for `model.tokenizer.decode`.
    """
    cfg = model.config
    settings = SamplingSettings.of(cfg.groups, cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p)
    device = model.head[0].weight.device
    labels = torch.as_tensor(labels, dtype=torch.long) if not isinstance(labels, torch.Tensor) else labels
    check_labels(labels, cfg)
    batch = labels.shape[0]
    if seeds is not None and generator is not None:
        raise WetokError("give seeds or a generator, not both")
    count = cfg.positions * cfg.groups
    if seeds is not None:
        if len(seeds) != batch:
            raise WetokError(f"seeds: one per image ({batch}), got {len(seeds)}")
        uniforms = image_uniforms(seeds, count)
    else:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        uniforms = 1.0 - torch.rand(batch, count, generator=generator, device=gen_device, dtype=torch.float64)
    uniforms = uniforms.to(device).view(batch, cfg.positions, cfg.groups)
    return sample_tokens(model, labels.to(device), settings, uniforms)


CPU_ROW_MULTIPLE, CPU_FREE_ROWS = 4, 12
"""On the CPU, MKL computes a row of a matrix product with a kernel that depends on the number of
rows when there are fewer than 12 and they are not a multiple of 4 (seen with 1, 2 and 4 threads),
and PyTorch's fused CPU attention splits its work by batch: so that an image's numbers never
depend on the batch it is in, such a CPU batch is padded to a multiple of 4 rows (with
throw-away sequences) and cached attention takes the plain matrix-product path."""


def sample_tokens(model: Transformer, labels: torch.Tensor, settings: SamplingSettings, uniforms: torch.Tensor) -> torch.Tensor:
    """The sampling loop: labels (B,), uniforms float64 (B, positions, G) -> tokens (B, grid, grid, G)."""
    batch = labels.shape[0]
    context = contextlib.nullcontext()
    if labels.device.type == "cpu":
        per_image = 2 if settings.guided else 1
        rows = batch * per_image
        if rows < CPU_FREE_ROWS and rows % CPU_ROW_MULTIPLE:
            padded_rows = math.ceil(rows / CPU_ROW_MULTIPLE) * CPU_ROW_MULTIPLE
            extra = math.ceil((padded_rows - rows) / per_image)
            labels = torch.cat([labels, labels.new_zeros(extra)])
            uniforms = torch.cat([uniforms, uniforms.new_full((extra, *uniforms.shape[1:]), 0.5)])
        context = sdpa_kernel(SDPBackend.MATH)
    was_training = model.training
    model.eval()
    try:
        with context:
            return _sample_loop(model, labels, settings, uniforms)[:batch]
    finally:
        model.train(was_training)


def _sample_loop(model: Transformer, labels: torch.Tensor, settings: SamplingSettings, uniforms: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    batch, guided = labels.shape[0], settings.guided
    if guided:
        labels = torch.cat([labels, torch.full_like(labels, cfg.unconditional_label)])
    spatial, factorized = model.new_caches(labels.shape[0])
    tokens = torch.empty(batch, cfg.positions, cfg.groups, dtype=torch.long, device=labels.device)
    x = model.class_emb(labels)
    for n in range(cfg.positions):
        h = model.spatial_step(x, spatial)
        for cache in factorized:
            cache.fill = 0
        for g in range(cfg.groups):
            logits = guide(model.subtoken_step(h, factorized), settings.cfg_scale[g], guided).float()
            logits = filter_logits(logits / settings.temperature[g], settings.top_k[g], settings.top_p[g])
            tokens[:, n, g] = draw(logits, uniforms[:, n, g])
            if g + 1 < cfg.groups:
                chosen = tokens[:, n, g].repeat(2) if guided else tokens[:, n, g]
                h = model.embedding(g)(chosen).unsqueeze(1)
        if n + 1 < cfg.positions:
            x = model.embed_tokens(tokens[:, n:n + 1])
            x = x.repeat(2, 1, 1) if guided else x
    return tokens.view(batch, cfg.grid_size, cfg.grid_size, cfg.groups)
