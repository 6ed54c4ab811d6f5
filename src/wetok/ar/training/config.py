"""Generator training configuration: frozen dataclasses read from YAML, unknown keys an error.

A config file has the sections `model`, `init`, `tokenizer`, `data`, `optim`, `train` and
`sample`; every key is documented on its field below and in `configs/ar-digits.yaml`.
`--set section.key=value` overrides a key after the file is read (the value is parsed as YAML).
The defaults are the original recipe: AdamW (0.9, 0.95), weight decay 0.05 on matrices only,
lr 3e-4 with a linear warm-up, held, then a linear decay to a tenth, gradient clipping at 1.0,
label dropout 0.1, bf16 autocast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ...execution import PRECISIONS
from ...runs.schedule import schedule_errors
from ...runs.settings import RunSettings, load_settings
from ..config import TransformerConfig, get_preset

SHARD_KEYS = ("grid_size", "groups", "bits_per_group")
"""Generator fields the token shards decide (the tokenizer's grid and sub-tokens)."""


@dataclass(frozen=True)
class ModelSection:
    """The generator: a preset (B, L, XL) or the `TransformerConfig` fields. `grid_size`,
    `groups`, `bits_per_group` and (unless set) `num_classes` come from the token shards."""

    preset: str | None = None  # B | L | XL; the architecture keys below then must stay unset
    dim: int | None = None  # model width (heads x a multiple of 4)
    heads: int | None = None  # attention heads
    kv_heads: int | None = None  # key/value heads (null: as many as heads)
    spatial_layers: int | None = None  # blocks over the token positions
    factorized_layers: int | None = None  # blocks over the sub-tokens of one position
    multiple_of: int | None = None  # SwiGLU width rounded up to this (default 256)
    ffn_dim_multiplier: float | None = None  # SwiGLU width multiplier
    num_classes: int | None = None  # class labels (null: as many as the shards' classes)
    token_dropout: float | None = None  # dropout on the input embeddings (default 0.1)
    residual_dropout: float | None = None  # dropout after attention and feed-forward (default 0.1)
    ffn_dropout: float | None = None  # dropout inside the feed-forward (default 0.1)
    attention_dropout: float | None = None  # dropout on the attention weights (default 0)
    drop_path: float | None = None  # stochastic depth, rising to this in the last block (default 0)
    class_dropout: float | None = None  # label dropout to the unconditional class (default 0.1)
    init_std: float | None = None  # standard deviation of the initial weights (default 0.02)

    def transformer_config(self, shards: Mapping[str, int], num_classes: int) -> TransformerConfig:
        """The generator this section describes for token shards of `shards` (grid_size, groups,
        bits_per_group) and `num_classes` classes."""
        own = {k: v for k, v in dataclasses.asdict(self).items() if k != "preset" and v is not None}
        classes = own.pop("num_classes", num_classes)
        if self.preset is not None:
            architecture = sorted(set(own) - {"token_dropout", "residual_dropout", "ffn_dropout", "attention_dropout",
                                              "drop_path", "class_dropout", "init_std"})
            if architecture:
                raise ConfigError(f"model: give either preset or architecture keys, not both ({', '.join(architecture)})")
            base = dataclasses.replace(get_preset(self.preset), name=None)
            return dataclasses.replace(base, **own, **shards, num_classes=classes)
        missing = [k for k in ("dim", "heads", "spatial_layers", "factorized_layers") if k not in own]
        if missing:
            raise ConfigError(f"model: set preset, or at least {', '.join(missing)}")
        return TransformerConfig(**own, **shards, num_classes=classes)


@dataclass(frozen=True)
class InitSection:
    """Where the weights start: random, or a generator to fine-tune."""

    checkpoint: str | None = None  # released generation .ckpt or a saved generator directory; null = random
    config: str | None = None  # the released GenStage YAML of a .ckpt (or a preset B | L | XL)
    trust_pickle: bool = False  # allow a .ckpt that needs pickle (runs code from the file: only files you trust)


@dataclass(frozen=True)
class TokenizerSection:
    """The tokenizer of the shards: checked against their manifest, used for the sample grids,
    and included in the exported generator. Null: the shards' preset when they name one."""

    model: str | None = None  # a tokenizer preset, a .ckpt or a saved tokenizer directory
    config: str | None = None  # its YAML (released .ckpt only)


@dataclass(frozen=True)
class DataSection:
    """How token sequences are drawn from the shards."""

    batch_size: int = 64  # sequences per process per micro-batch
    views: str = "random"  # random: one augmented view per image per epoch, drawn from the seed; first: view 0 only


@dataclass(frozen=True)
class OptimSection:
    """AdamW, learning-rate schedule, clipping, accumulation, EMA."""

    lr: float = 3e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    weight_decay: float = 0.05  # AdamW weight decay of the matrices (embeddings, projections, heads); norms take none
    schedule: str = "linear"  # constant | cosine | linear (the original: peak held 5% of the steps, then a line) | step
    warmup_steps: int = 10000  # linear warm-up from 0 over this many steps (the original: 6 epochs of ImageNet)
    min_lr_ratio: float = 0.1  # cosine, linear: final lr as a fraction of the peak
    decay_start: int | None = None  # cosine, linear: the step the decay starts (null: after warm-up (+5% for linear))
    drop_steps: tuple[int, ...] = ()  # step: multiply the lr by drop_factor at each of these steps
    drop_factor: float = 0.1  # step: the factor
    grad_clip: float | None = 1.0  # max global gradient norm; null = no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float | None = None  # EMA of the weights (sampled and exported when set); null = none


@dataclass(frozen=True)
class TrainSection:
    """Length, precision, parallelism, checkpoints, logging."""

    steps: int = 300000  # total optimizer steps
    seed: int = 0  # seeds the weights, data order, views and dropout
    precision: str = "bf16"  # fp32 | bf16 | fp16 (autocast; fp16 uses a gradient scaler)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    threads: int | None = None  # torch CPU threads per process (null = torch's default)
    parallel: str = "ddp"  # ddp (a copy per process) | fsdp (parameters sharded with fully_shard)
    ckpt_every: int = 1000  # write a checkpoint every this many steps (and at the end)
    ckpt_minutes: float | None = None  # also write one when this many minutes passed since the last
    keep_checkpoints: int = 3  # newest training checkpoints kept
    timeout_minutes: float = 10.0  # under torchrun: how long a process waits for the others at a collective
    log_every: int = 10  # TensorBoard scalars every this many steps


@dataclass(frozen=True)
class SampleSection:
    """A grid of samples per class during training (needs the tokenizer)."""

    every: int = 1000  # steps between grids (and at the end); 0 = none
    classes: int = 10  # the first this many classes, one row each
    per_class: int = 8  # samples per class (columns)
    cfg_scale: float = 1.5  # guidance scale of the grid's samples
    seed: int = 0  # sample i of a grid uses seed + i (the same images at every grid, for comparison)


@dataclass(frozen=True)
class ARTrainConfig(RunSettings):
    """A whole generator training run."""

    model: ModelSection = field(default_factory=ModelSection)
    init: InitSection = field(default_factory=InitSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)

    def __post_init__(self) -> None:
        _validate(self)


def _validate(cfg: ARTrainConfig) -> None:
    t, d, o, s = cfg.train, cfg.data, cfg.optim, cfg.sample
    checks = [
        (t.steps > 0, f"train.steps must be positive, got {t.steps}"),
        (t.precision in PRECISIONS, f"train.precision must be fp32, bf16 or fp16, got {t.precision!r}"),
        (t.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {t.device!r}"),
        (t.parallel in ("ddp", "fsdp"), f"train.parallel must be ddp or fsdp, got {t.parallel!r}"),
        (t.threads is None or t.threads > 0, f"train.threads must be positive or null, got {t.threads}"),
        (t.ckpt_every > 0, "train.ckpt_every must be positive"),
        (t.ckpt_minutes is None or t.ckpt_minutes > 0, "train.ckpt_minutes must be positive or null"),
        (t.keep_checkpoints > 0, "train.keep_checkpoints must be positive"),
        (0 < t.timeout_minutes <= 1e6, f"train.timeout_minutes must be above 0 and at most 1e6, got {t.timeout_minutes}"),
        (t.log_every > 0, "train.log_every must be positive"),
        (d.batch_size > 0, f"data.batch_size must be positive, got {d.batch_size}"),
        (d.views in ("random", "first"), f"data.views must be random or first, got {d.views!r}"),
        (o.lr > 0, f"optim.lr must be positive, got {o.lr}"),
        (all(0 <= b < 1 for b in o.betas), f"optim.betas must lie in [0, 1), got {list(o.betas)}"),
        (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}"),
        (o.grad_accum > 0 and o.warmup_steps >= 0, "optim.grad_accum must be positive and optim.warmup_steps >= 0"),
        (0 <= o.min_lr_ratio <= 1, f"optim.min_lr_ratio must lie in [0, 1], got {o.min_lr_ratio}"),
        (o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip must be positive or null"),
        (o.ema_decay is None or 0.0 <= o.ema_decay < 1.0, "optim.ema_decay must be null or in [0, 1)"),
        (o.ema_decay is None or t.parallel == "ddp", "optim.ema_decay needs train.parallel: ddp (the EMA is a whole copy per process)"),
        (s.every >= 0 and s.classes > 0 and s.per_class > 0, "sample.every must be >= 0, sample.classes and sample.per_class positive"),
        (s.cfg_scale > 0, f"sample.cfg_scale must be positive, got {s.cfg_scale}"),
        (not cfg.init.trust_pickle or cfg.init.checkpoint is not None, "init.trust_pickle applies to init.checkpoint; set it"),
        (cfg.init.config is None or cfg.init.checkpoint is not None, "init.config applies to init.checkpoint; set it"),
        (cfg.tokenizer.config is None or cfg.tokenizer.model is not None, "tokenizer.config applies to tokenizer.model; set it"),
    ]
    checks += [(False, message) for message in schedule_errors(o, t.steps)]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.init.checkpoint is not None:
        architecture = sorted(k for k, v in dataclasses.asdict(cfg.model).items() if v is not None and k in (
            "preset", "dim", "heads", "kv_heads", "spatial_layers", "factorized_layers", "multiple_of", "ffn_dim_multiplier"))
        if architecture:
            raise ConfigError(f"init.checkpoint decides the architecture: leave model.{', model.'.join(architecture)} unset")


def load_ar_train_config(path: str | Path | None, overrides: list[str] | None = None) -> ARTrainConfig:
    """Read a YAML generator training config (the defaults when `path` is None) and apply
    `--set` overrides; every problem is one `ConfigError` naming the file."""
    return load_settings(ARTrainConfig, path, overrides or [])
