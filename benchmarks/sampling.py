"""Generator sampling speed: wetok's cached sampler against recomputing the prefix and against
the original's sampling loop, with random weights.

    python benchmarks/sampling.py [--models tiny,B] [--batch 4] [--cfg 1.75] [--repeats 3]
                                  [--device cpu|cuda] [--skip-uncached B]

For each model (tiny: the tiny_ar fixture's width at 16 x 16 positions; B, L, XL: the presets),
sampling `--batch` images with guidance (a doubled batch) at 256 positions, in one process:
    cached:   `wetok.ar.generate` (static KV caches for the spatial and the factorized blocks);
    uncached: every position recomputes the spatial blocks over the whole prefix (no cache);
    original: the original's loop (`sample_WeTok`): attention over the whole padded cache with a
              boolean mask, the factorized cache allocated anew at every position, top-k/top-p
              through sorting and `torch.multinomial`; same weights, same arithmetic otherwise.
It prints the median of `--repeats` timed runs after a warm-up, images/s, positions/s, and the
ratios, with the CPU model, its vector extensions and torch's thread count. For B, L and XL the
uncached sampler would take hours on a CPU: `uncached~` is the sum over all 256 positions of the
linear interpolation between single positions timed at 9 evenly spaced prefix lengths.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from timing import cpu_description, median_seconds  # benchmarks/timing.py, beside this script

from wetok import ar
from wetok.ar.layers import apply_rotary
from wetok.ar.model import Transformer

TINY = ar.TransformerConfig(grid_size=16, groups=4, bits_per_group=8, dim=64, heads=4, spatial_layers=2, factorized_layers=2,
                            num_classes=10)


def random_model(config: ar.TransformerConfig, device: torch.device) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(config).to(device).eval()
    with torch.no_grad():
        for head in model.head:
            head.weight.normal_(0, 0.02)
    return model


# ---- the samplers being compared -----------------------------------------------------------------
def cached(model: Transformer, labels: torch.Tensor, cfg: float) -> torch.Tensor:
    return ar.generate(model, labels, cfg_scale=cfg, seeds=list(range(len(labels))))


@torch.no_grad()
def uncached(model: Transformer, labels: torch.Tensor, cfg: float, positions: list[int] | None = None) -> torch.Tensor:
    """No spatial cache: at position n the spatial blocks run over all n + 1 inputs again (only at
    `positions` when given, for `uncached_estimate`)."""
    c = model.config
    batch = labels.shape[0]
    both = torch.cat([labels, torch.full_like(labels, c.unconditional_label)])
    tokens = torch.zeros(batch, c.positions, c.groups, dtype=torch.long, device=labels.device)
    for n in positions if positions is not None else range(c.positions):
        x = torch.cat([model.class_emb(both), model.embed_tokens(tokens[:, :n]).repeat(2, 1, 1)], dim=1)
        table = model.rotary[: n + 1]
        for block in model.spatial_blocks:
            x = block(x, table)
        h = x[:, -1:]
        _, factorized = model.new_caches(2 * batch)
        for g in range(c.groups):
            logits = model.subtoken_step(h, factorized)
            cond, uncond = logits.float().chunk(2)
            probs = torch.softmax(uncond + (cond - uncond) * cfg, dim=-1)
            tokens[:, n, g] = torch.multinomial(probs, 1)[:, 0]
            h = model.embedding(g)(tokens[:, n, g].repeat(2)).unsqueeze(1)
    return tokens


def uncached_estimate(model: Transformer, labels: torch.Tensor, cfg: float, device: torch.device, samples: int = 9) -> float:
    """Seconds of `uncached` over all positions, from timing single positions at `samples` evenly
    spaced prefix lengths (the cost of a position grows linearly with its prefix) and summing the
    linear interpolation: for models where the full run would take hours on a CPU."""
    last = model.config.positions - 1
    points = sorted({round(last * k / (samples - 1)) for k in range(samples)})
    uncached(model, labels, cfg, [0])  # warm-up
    seconds = [median_seconds(lambda n=n: uncached(model, labels, cfg, [n]), 1, device, warm=False) for n in points]
    total = 0.0
    for (n0, t0), (n1, t1) in zip(zip(points, seconds), zip(points[1:], seconds[1:])):
        total += (t0 + t1) / 2 * (n1 - n0)
    return total + (seconds[0] + seconds[-1]) / 2  # the trapezoids count n1 - n0 steps per segment: one more in all


class _MaskedCache:
    """The original's `KVCache`: zeros of the whole padded length, written at `input_pos`."""

    def __init__(self, rows: int, model: Transformer, length: int) -> None:
        c, w = model.config, model.head[0].weight
        self.k = torch.zeros(rows, c.heads, length, c.head_dim, device=w.device, dtype=w.dtype)
        self.v = torch.zeros_like(self.k)


def _masked_block(block, x, table, pos: torch.Tensor, cache: _MaskedCache, mask: torch.Tensor) -> torch.Tensor:
    att = block.attention
    b, s, _ = x.shape
    q, k, v = att.wqkv(block.attention_norm(x)).split([att.heads * att.head_dim] * 3, dim=-1)
    q = apply_rotary(q.view(b, s, att.heads, att.head_dim), table).transpose(1, 2)
    k = apply_rotary(k.view(b, s, att.heads, att.head_dim), table).transpose(1, 2)
    cache.k[:, :, pos] = k
    cache.v[:, :, pos] = v.view(b, s, att.heads, att.head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, cache.k, cache.v, attn_mask=mask)
    h = x + att.wo(out.transpose(1, 2).reshape(b, s, -1))
    return h + block.feed_forward(block.ffn_norm(h))


def _top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0:
        logits[logits < torch.topk(logits, top_k)[0][..., -1, None]] = -float("inf")
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        remove = torch.cumsum(F.softmax(ordered, dim=-1), dim=-1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = 0
        logits[remove.scatter(1, order, remove)] = -float("inf")
    return logits


@torch.no_grad()
def original(model: Transformer, labels: torch.Tensor, cfg: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The original's `sample_WeTok` loop, as its code does it (see the module docstring)."""
    c = model.config
    batch = labels.shape[0]
    length = 8 * math.ceil((1 + c.positions) / 8)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=labels.device)).unsqueeze(0)
    spatial = [_MaskedCache(2 * batch, model, length) for _ in model.spatial_blocks]
    x = model.class_emb(torch.cat([labels, torch.full_like(labels, c.unconditional_label)]))
    out = []
    for n in range(c.positions):
        pos = torch.tensor([n], device=labels.device)
        h = x
        for block, cache in zip(model.spatial_blocks, spatial):
            h = _masked_block(block, h, model.rotary[pos], pos, cache, causal[:, None, pos])
        factorized = [_MaskedCache(2 * batch, model, length) for _ in model.factorized_blocks]  # anew at every position
        y, chosen = h, []
        for g in range(c.groups):
            fpos = torch.tensor([g], device=labels.device)
            for block, cache in zip(model.factorized_blocks, factorized):
                y = _masked_block(block, y, model.rotary[fpos], fpos, cache, causal[:, None, fpos])
            logits = model.head[g](model.norm(y))[:, -1]
            cond, uncond = logits.chunk(2)
            logits = _top_k_top_p(uncond + (cond - uncond) * cfg, top_k, top_p)
            token = torch.multinomial(F.softmax(logits, dim=-1), 1)
            chosen.append(token[:, 0])
            y = model.embedding(g)(torch.cat([token, token]))
        step = torch.stack(chosen, dim=-1)
        out.append(step)
        x = model.embed_tokens(step[:, None]).repeat(2, 1, 1)
    return torch.stack(out, dim=1)


# ---- timing --------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,B", help="comma list of tiny, B, L, XL (default tiny,B)")
    parser.add_argument("--batch", type=int, default=4, help="images per run (default 4; guidance doubles the rows)")
    parser.add_argument("--cfg", type=float, default=1.75, help="guidance scale (default 1.75)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-uncached", default="", help="models whose uncached sampler is not timed")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    print(f"device: {where}; torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, cfg {args.cfg}")
    print(f"{'model':<6} {'params':>8} {'sampler':<9} {'s/run':>9} {'img/s':>9} {'pos/s':>9} {'cached is':>12}")
    skip = {m.strip() for m in args.skip_uncached.split(",") if m.strip()}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        config = TINY if name == "tiny" else ar.PRESETS[name]
        model = random_model(config, device)
        labels = torch.arange(args.batch, device=device) % config.num_classes
        results = {}
        samplers = {"cached": cached, "original": original, "uncached": uncached}
        for sampler, fn in samplers.items():
            if sampler == "uncached" and name in skip:
                continue
            if sampler == "uncached" and name != "tiny":
                results["uncached~"] = uncached_estimate(model, labels, args.cfg, device)
                continue
            results[sampler] = median_seconds(lambda fn=fn, m=model, lab=labels: fn(m, lab, args.cfg), args.repeats, device)
        for sampler, seconds in results.items():
            ratio = "" if sampler == "cached" else f"{seconds / results['cached']:.2f}x faster"
            print(f"{name:<6} {config.parameter_count() / 1e6:>7.1f}M {sampler:<9} {seconds:>9.3f} {args.batch / seconds:>9.3f} "
                  f"{args.batch * config.positions / seconds:>9.1f} {ratio:>12}")


if __name__ == "__main__":
    main()
