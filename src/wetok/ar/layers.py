"""The generator's parts: 2D rotary embedding, SwiGLU feed-forward, attention with an optional
static key/value cache, and the Llama block. Parameter names are the released checkpoints'
(`attention.wqkv`, `attention.wo`, `feed_forward.w1/w2/w3`, `attention_norm`, `ffn_norm`).

RMSNorm is `torch.nn.RMSNorm`; the rest is wetok's own, because the released layout (fused
`wqkv`, a rotary table whose class-token rows are zero, rotation in float32) is not what a
library's Llama block computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from .config import CLASS_TOKENS, TransformerConfig


def rotary_table(config: TransformerConfig) -> torch.Tensor:
    """The 2D rotary angles of every sequence position, float32 (1 + positions, head_dim / 2, 2)
    holding (cos, sin).

    Row 0 is the class token: all zeros (cos = sin = 0), as in the original, so the class
    token's queries and keys are zero vectors. Row 1 + r * grid + c is grid cell (r, c): its first
    head_dim / 4 angles are r * f_k, the others c * f_k, with f_k = base ** (-4k / head_dim).
    The factorized blocks use rows 0 .. G - 1 for their G sub-token inputs (the original reuses
    the spatial table there).
    """
    half, cpu = config.head_dim // 2, torch.device("cpu")  # real data even while a model is built on the meta device
    freqs = 1.0 / (config.rope_base ** (torch.arange(0, half, 2, device=cpu)[: half // 2].float() / half))
    angles = torch.outer(torch.arange(config.grid_size, dtype=torch.float32, device=cpu), freqs)  # (grid, head_dim / 4)
    grid = torch.cat([angles[:, None, :].expand(-1, config.grid_size, -1), angles[None, :, :].expand(config.grid_size, -1, -1)], dim=-1)
    table = torch.stack([torch.cos(grid), torch.sin(grid)], dim=-1).flatten(0, 1)
    return torch.cat([torch.zeros(CLASS_TOKENS, half, 2, device=cpu), table])


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of `x` (B, S, H, head_dim) by the angles `table` (S, head_dim / 2, 2),
    in float32, as one complex product per pair ((a + ib)(cos + i sin): a cos - b sin, b cos + a sin,
    the original's formula); returned in x's dtype."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    turned = pairs * torch.view_as_complex(table)[None, :, None, :]
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), no biases; width `config.ffn_hidden`."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_hidden, bias=False)
        self.w3 = nn.Linear(config.dim, config.ffn_hidden, bias=False)
        self.w2 = nn.Linear(config.ffn_hidden, config.dim, bias=False)
        self.ffn_dropout = nn.Dropout(config.ffn_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class KVCache:
    """Static key/value buffers of one attention layer, (B, kv_heads, length, head_dim), allocated
    once and written in place; `fill` is how many positions hold data."""

    def __init__(self, batch: int, kv_heads: int, length: int, head_dim: int, *, device: torch.device, dtype: torch.dtype) -> None:
        self.keys = torch.zeros(batch, kv_heads, length, head_dim, device=device, dtype=dtype)
        self.values = torch.zeros_like(self.keys)
        self.fill = 0

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `keys`/`values` (B, kv_heads, S, head_dim) after the filled positions; return
        views of every filled position."""
        end = self.fill + keys.shape[2]
        if end > self.keys.shape[2]:
            raise RuntimeError(f"KV cache of {self.keys.shape[2]} positions cannot take position {end - 1}")
        self.keys[:, :, self.fill:end] = keys
        self.values[:, :, self.fill:end] = values
        self.fill = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class Attention(nn.Module):
    """Multi-head causal self-attention with fused `wqkv`, 2D rotary queries and keys, and
    grouped key/value heads when `kv_heads < heads`."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.key_value_heads, config.head_dim
        self.wqkv = nn.Linear(config.dim, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)
        self.attention_dropout = config.attention_dropout
        self.resid_dropout = nn.Dropout(config.residual_dropout)

    def forward(self, x: torch.Tensor, table: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, S, dim) at the positions whose angles `table` (S, head_dim / 2, 2) holds -> (B, S, dim).

        Without a cache: causal over the S inputs. With one: the S inputs follow the cached
        positions, and each attends to all of those and causally to the others (S = 1 when
        sampling, so no mask is needed).
        """
        b, s, _ = x.shape
        kv = self.kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([self.heads * self.head_dim, kv, kv], dim=-1)
        q = apply_rotary(q.view(b, s, self.heads, self.head_dim), table).transpose(1, 2)
        k = apply_rotary(k.view(b, s, self.kv_heads, self.head_dim), table).transpose(1, 2)
        v = v.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        causal = True
        if cache is not None:
            if s != 1 and cache.fill:
                raise RuntimeError("a cached attention step takes one position at a time after the first")
            k, v = cache.append(k, v)
            causal = s > 1
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(b, s, -1)))


class Block(nn.Module):
    """Pre-norm Llama block: h = x + attention(norm(x)); out = h + feed_forward(norm(h))."""

    def __init__(self, config: TransformerConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config)
        self.attention_norm = nn.RMSNorm(config.dim, eps=config.norm_eps)
        self.ffn_norm = nn.RMSNorm(config.dim, eps=config.norm_eps)
        self.drop_path = StochasticDepth(drop_path, mode="row")  # per-sample, scaled by 1 / (1 - p); identity in eval

    def forward(self, x: torch.Tensor, table: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        h = x + self.drop_path(self.attention(self.attention_norm(x), table, cache))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))
