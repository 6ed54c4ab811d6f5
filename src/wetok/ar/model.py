"""The class-conditional WeTok generator: a LlamaGen-style transformer over factorized tokens.

A sequence is [class token, position 0, ..., position N - 2]; the input at a position is the sum
of its G sub-token embeddings (`0_emb` ... `{G-1}_emb`). `spatial_blocks` run causally over the
sequence; then, at every position n, `factorized_blocks` run causally over the G inputs
[spatial output at n, emb_0(t_0), ..., emb_{G-2}(t_{G-2})] of that position's sub-tokens, and
head g predicts sub-token g from the g-th output (after the final `norm`). The parameter names
are those of the released checkpoints' `transformer.*` entries.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WetokError
from .config import TransformerConfig
from .layers import Block, KVCache, rotary_table
from .objective import subtoken_losses


class LabelEmbedding(nn.Module):
    """Class labels (B,) int -> embeddings (B, 1, dim). Row `num_classes` of `embedding_table` is
    the unconditional embedding; in training a label is replaced by it with probability
    `class_dropout` (what classifier-free guidance needs)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(config.num_classes + 1, config.dim)
        self.num_classes = config.num_classes
        self.class_dropout = config.class_dropout

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.class_dropout > 0:
            dropped = torch.rand(labels.shape, device=labels.device) < self.class_dropout
            labels = torch.where(dropped, self.num_classes, labels)
        return self.embedding_table(labels).unsqueeze(1)


class Transformer(nn.Module):
    """The generator. `forward` is the teacher-forced pass of training and evaluation;
    `wetok.ar.generate` samples with `class_step` / `spatial_step` / `subtoken_step` and static
    key/value caches. `tokenizer` is the paired (frozen) tokenizer when the model was loaded
    with one, else None; it is not part of `transformer_state_dict()`."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        for g in range(config.groups):
            self.add_module(f"{g}_emb", nn.Embedding(config.vocab_size, config.dim))
        self.class_emb = LabelEmbedding(config)
        self.token_drop = nn.Dropout(config.token_dropout)
        self.spatial_blocks = nn.ModuleList(Block(config, p) for p in _depth_rates(config.drop_path, config.spatial_layers))
        self.factorized_blocks = nn.ModuleList(Block(config, p) for p in _depth_rates(config.drop_path, config.factorized_layers))
        self.norm = nn.RMSNorm(config.dim, eps=config.norm_eps)
        self.head = nn.ModuleList(nn.Linear(config.dim, config.vocab_size, bias=False) for _ in range(config.groups))
        self.register_buffer("rotary", rotary_table(config), persistent=False)
        self.tokenizer = None
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """As `nn.Module._apply` (behind `.to`, `.cuda`, `.half`), except that the rotary angles stay
        float32 when the weights change dtype (`model.to(torch.bfloat16)`), as the original's do."""
        super()._apply(fn, recurse)
        if self.rotary.dtype != torch.float32:
            self.rotary = rotary_table(self.config).to(self.rotary.device)
        return self

    def reset_parameters(self) -> None:
        """The original's initialisation: every linear and embedding weight normal(0, init_std),
        the output heads zero, the norms one."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        for head in self.head:
            nn.init.zeros_(head.weight)

    # ---- the paired tokenizer -------------------------------------------------------------------
    def attach_tokenizer(self, tokenizer: nn.Module | None) -> None:
        """Pair `tokenizer` (frozen, eval mode) with this generator; None removes it."""
        if tokenizer is not None:
            tokenizer.requires_grad_(False).eval()
        self.tokenizer = tokenizer

    def train(self, mode: bool = True) -> Transformer:
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()  # frozen: its quantizer never computes training losses here
        return self

    def transformer_state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's own tensors (the released `transformer.*` entries, without the prefix)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("tokenizer.")}

    # ---- embeddings -------------------------------------------------------------------------------
    def embedding(self, group: int) -> nn.Embedding:
        """Sub-token `group`'s embedding table (`{group}_emb`)."""
        return self.get_submodule(f"{group}_emb")

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens int (B, S, G) -> the sum of their sub-token embeddings (B, S, dim)."""
        total = self.embedding(0)(tokens[..., 0])
        for g in range(1, self.config.groups):
            total = total + self.embedding(g)(tokens[..., g])
        return total

    # ---- teacher-forced pass ---------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: tokens int (B, N, G) with values in [0, 2**b), N <= positions
        (raster order), labels int (B,) in [0, num_classes] -> logits (B, N, G, 2**b) in the
        model's dtype: logits[:, n, g] predicts tokens[:, n, g] from the label, the positions
        before n and the sub-tokens before g."""
        self.check_inputs(tokens, labels)
        b, n, groups = tokens.shape
        embedded = self.embed_tokens(tokens)
        x = self.token_drop(torch.cat([self.class_emb(labels), embedded[:, :-1]], dim=1))
        table = self.rotary[:n]
        for block in self.spatial_blocks:
            x = block(x, table)
        inputs = [x] + [self.embedding(g)(tokens[..., g]) for g in range(groups - 1)]
        h = torch.stack(inputs, dim=2).reshape(b * n, groups, -1)
        table = self.rotary[:groups]
        for block in self.factorized_blocks:
            h = block(h, table)
        h = self.norm(h).view(b, n, groups, -1)
        return torch.stack([self.head[g](h[:, :, g]) for g in range(groups)], dim=2)

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training objective: the sum over the G sub-tokens of their mean cross-entropy
        (float32 scalar), for tokens (B, N, G) and labels (B,) as in `forward`."""
        return subtoken_losses(self(tokens, labels), tokens).total

    def check_inputs(self, tokens: torch.Tensor, labels: torch.Tensor) -> None:
        """One `WetokError` for tokens or labels of the wrong shape, type or range."""
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.ndim != 3:
            raise WetokError(f"tokens must be an integer tensor (B, N, {cfg.groups}), got {_described(tokens)}")
        if tokens.shape[2] != cfg.groups or not 1 <= tokens.shape[1] <= cfg.positions:
            raise WetokError(f"tokens must be (B, N <= {cfg.positions}, {cfg.groups}), got {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
            raise WetokError(f"token values must lie in [0, {cfg.vocab_size}), got [{int(tokens.min())}, {int(tokens.max())}]")
        check_labels(labels, cfg, batch=tokens.shape[0])

    # ---- cached steps (sampling) -------------------------------------------------------------------
    def new_caches(self, batch: int) -> tuple[list[KVCache], list[KVCache]]:
        """Static key/value caches for sampling `batch` sequences: one per spatial block (1 +
        positions long) and one per factorized block (G long), in the model's device and dtype."""
        cfg, weight = self.config, self.head[0].weight
        def make(length: int) -> KVCache:
            return KVCache(batch, cfg.key_value_heads, length, cfg.head_dim, device=weight.device, dtype=weight.dtype)
        return ([make(1 + cfg.positions) for _ in self.spatial_blocks], [make(cfg.groups) for _ in self.factorized_blocks])

    def spatial_step(self, x: torch.Tensor, caches: list[KVCache]) -> torch.Tensor:
        """Inputs (B, 1, dim) at the next sequence position (0: the class token) -> the spatial
        blocks' output there (B, 1, dim), appending to `caches`."""
        start = caches[0].fill
        table = self.rotary[start:start + x.shape[1]]
        x = self.token_drop(x)
        for block, cache in zip(self.spatial_blocks, caches):
            x = block(x, table, cache)
        return x

    def subtoken_step(self, x: torch.Tensor, caches: list[KVCache]) -> torch.Tensor:
        """Input (B, 1, dim) of sub-token step g = caches' fill (g = 0: the spatial output; else
        emb_{g-1} of sub-token g - 1) -> logits (B, 2**b) for sub-token g."""
        g = caches[0].fill
        table = self.rotary[g:g + 1]
        for block, cache in zip(self.factorized_blocks, caches):
            x = block(x, table, cache)
        return self.head[g](self.norm(x[:, 0]))


def check_labels(labels: torch.Tensor, config: TransformerConfig, *, batch: int | None = None) -> None:
    """One `WetokError` unless labels is an integer tensor (B,) with values in [0, num_classes]."""
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1:
        raise WetokError(f"labels must be an integer tensor (B,), got {_described(labels)}")
    if batch is not None and labels.shape[0] != batch:
        raise WetokError(f"labels must hold one label per sequence ({batch}), got {labels.shape[0]}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > config.num_classes):
        raise WetokError(f"labels must lie in [0, {config.num_classes}] ({config.num_classes}: unconditional), "
                         f"got [{int(labels.min())}, {int(labels.max())}]")


def _depth_rates(rate: float, layers: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to `rate` over the layers (as the original)."""
    return [float(r) for r in torch.linspace(0, rate, layers, device="cpu")]


def _described(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)}"
    return type(value).__name__
