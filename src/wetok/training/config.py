"""Training configuration: frozen dataclasses read from YAML, unknown keys an error.

A config file has the sections `model`, `init`, `data`, `loss`, `discriminator`, `optim`,
`train` and `eval`; every key is documented on its dataclass field below and in `configs/`.
`--set section.key=value` overrides a key after the file is read (the value is parsed as YAML).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import TokenizerConfig, get_preset
from ..errors import ConfigError
from ..execution import PRECISIONS, Execution
from ..runs.schedule import schedule_errors
from ..runs.settings import RunSettings, load_settings


@dataclass(frozen=True)
class ModelSection:
    """The architecture. `preset` (a released preset name) or the TokenizerConfig fields."""

    preset: str | None = None  # e.g. "imagenet-d8"; the other keys then must stay unset
    channels: int | None = None  # base width (multiple of 32)
    channel_mult: tuple[int, ...] | None = None  # width multiplier per level; downsample = 2**(len-1)
    num_res_blocks: int | None = None  # residual blocks per level
    latent_channels: int | None = None  # C: bits per latent position
    groups: int | None = None  # G: quantizer groups (C/G bits per token)
    norm_groups: int | None = None  # groups of every GroupNorm (null: 32, as all released models)

    def tokenizer_config(self, *, generative: bool) -> TokenizerConfig:
        """The TokenizerConfig this section describes; `generative` for stage 2."""
        own = {k: v for k, v in dataclasses.asdict(self).items() if k != "preset" and v is not None}
        if self.preset is not None:
            if own:
                raise ConfigError(f"model: give either preset or architecture keys, not both ({', '.join(own)})")
            base = get_preset(self.preset)
            return dataclasses.replace(base, generative=generative, name=None, hub=None)
        return TokenizerConfig(**own, generative=generative)


@dataclass(frozen=True)
class InitSection:
    """Where the weights start."""

    checkpoint: str | None = None  # released .ckpt, saved model dir, or a wetok training checkpoint (.pt); null = random
    weights: str = "ema"  # "ema" or "raw": which weights of a released .ckpt to start from
    discriminator: bool = True  # stage 1: also take the discriminator from the checkpoint when it has one
    deepen: bool = False  # the model may have more residual blocks per level than the checkpoint: those start as identities


@dataclass(frozen=True)
class DataSection:
    """Training images."""

    layout: str = "auto"  # auto | folder | imagenet | coco | tar (auto: tar shards if any *.tar, ImageNet/COCO split dirs, else folder)
    split: str = "train"  # ImageNet/COCO split directory (train -> train/ or train2017/)
    size: int = 256  # crop size in pixels (a multiple of the downsample factor)
    resize: int | None = 256  # shorter side resized to this before cropping; null = keep (upscaled only if smaller than size)
    random_scale: tuple[float, float] | None = None  # optional (lo, hi): multiply `resize` by a uniform factor per sample
    flip: bool = True  # random horizontal flips
    batch_size: int = 4  # images per process per micro-batch
    workers: int = 2  # DataLoader worker processes per training process (0 = load in the main process)
    cache_mb: float = 0  # keep up to this many MiB of decoded images in memory per loader process (folder layouts; small data sets)


@dataclass(frozen=True)
class LossSection:
    """Loss weights (stage 2 ignores entropy and commitment)."""

    l1_weight: float = 1.0  # pixel L1
    l2_weight: float = 0.0  # pixel mean squared error (what PSNR measures); 0 = off, as in the original recipe
    perceptual_weight: float = 1.0  # LPIPS; 0 disables it (needs no VGG16 weights then)
    perceptual_net: str = "vgg"  # LPIPS backbone: vgg | alex
    perceptual_backbone_weights: str | None = None  # explicit backbone weight file (default: torch hub cache)
    perceptual_head_weights: str | None = None  # explicit LPIPS linear-head weight file
    gan_weight: float = 0.1  # non-saturating generator loss weight; 0 disables the GAN entirely
    adaptive_gan_weight: bool = False  # multiply gan_weight by VQGAN's adaptive weight
    gan_start: int = 0  # optimizer step at which the discriminator and generator GAN terms start
    entropy_weight: float = 0.1  # GQ entropy loss weight (stage 1)
    sample_entropy_weight: float = 1.0  # weight of the per-sample entropy inside the entropy loss
    codebook_entropy_weight: float = 1.0  # weight of the codebook entropy inside the entropy loss
    commitment_weight: float = 0.25  # commitment loss weight (stage 1)
    lecam_weight: float = 0.05  # LeCAM regulariser of the discriminator; 0 disables it
    lecam_decay: float = 0.999  # EMA decay of LeCAM's logit averages


@dataclass(frozen=True)
class DiscriminatorSection:
    """The PatchGAN discriminator."""

    filters: int = 64  # width of the first layer
    layers: int = 3  # stride-2 layers


@dataclass(frozen=True)
class OptimSection:
    """Adam for both networks, learning-rate schedule, EMA, clipping, accumulation."""

    lr: float = 1e-4  # tokenizer learning rate (peak)
    disc_lr: float = 1e-4  # discriminator learning rate (peak)
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas
    weight_decay: float = 0.0  # Adam (L2) weight decay
    schedule: str = "constant"  # constant | cosine | linear | step
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps (any schedule)
    min_lr_ratio: float = 0.0  # cosine: final lr as a fraction of the peak
    decay_start: int | None = None  # cosine: the step the decay starts (null = the end of warm-up); constant before
    drop_steps: tuple[int, ...] = ()  # step: multiply the lr by drop_factor at each of these steps
    drop_factor: float = 0.1  # step: the factor
    grad_clip: float | None = 1.0  # max global gradient norm per network; null = no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    ema_decay: float = 0.999  # EMA of the tokenizer weights (evaluation and export); warm-up min(decay, (1+n)/(10+n))


@dataclass(frozen=True)
class TrainSection:
    """Length, precision, memory layout, checkpoints, logging.

    `channels_last` puts the tokenizer's, the discriminator's and the LPIPS network's 4-D weights
    and every input batch in NHWC memory layout (`torch.channels_last`); the optimizer state
    follows its parameters, while the EMA weights, the exported model and the checkpoints stay
    contiguous NCHW, so a checkpoint resumes under either layout. It changes the speed and the
    rounding of the convolutions, nothing else (the first step's loss agrees to float32 rounding;
    later steps drift as two float32 runs on different kernels do: `benchmarks/train.py
    --loss-curve`, docs/training.md). The default, null, picks it by precision, as the inference
    path does (`wetok.execution.Execution`): on for bf16 and fp16, whose convolution kernels are
    NHWC-native (on an AMD EPYC (Zen 3), AVX2, bf16 trains 2.8x faster with it); off for fp32,
    which there trains about 10% slower in NHWC (convolution and GroupNorm backward) and so keeps
    the contiguous computation of earlier versions. true / false force it.
    """

    stage: int = 1  # 1: plain decoder, all losses; 2: generative decoder, encoder+quantizer frozen
    steps: int = 1000  # total optimizer steps
    seed: int = 0  # seeds weights, data order and augmentation
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 uses a gradient scaler)
    channels_last: bool | None = None  # NHWC memory layout (speed only; see above); null: on for bf16/fp16, off for fp32
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    threads: int | None = None  # torch CPU threads per process (null = torch's default)
    ckpt_every: int = 1000  # write a checkpoint every this many steps (and at the end)
    ckpt_minutes: float | None = None  # also write one when this many minutes passed since the last
    keep_checkpoints: int = 3  # newest training checkpoints kept
    timeout_minutes: float = 10.0  # under torchrun: how long a process waits for the others at a collective
    log_every: int = 10  # TensorBoard scalars every this many steps
    image_every: int = 500  # reconstruction grid every this many steps

    @property
    def nhwc(self) -> bool:
        """Whether the run uses channels_last: `channels_last`, or for null, precision bf16 or fp16
        (the rule of `Execution.memory_format`)."""
        return Execution(self.precision, self.channels_last).memory_format == torch.channels_last


@dataclass(frozen=True)
class EvalSection:
    """Held-out PSNR and SSIM of the EMA weights during training (optional)."""

    folder: str | None = None  # images; each resized (shorter side) and centre-cropped to `size`
    size: int = 256  # evaluation crop size
    every: int = 1000  # steps between evaluations (and at the end)
    max_images: int = 64  # at most this many images


@dataclass(frozen=True)
class TrainConfig(RunSettings):
    """A whole training run."""

    model: ModelSection = field(default_factory=ModelSection)
    init: InitSection = field(default_factory=InitSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    discriminator: DiscriminatorSection = field(default_factory=DiscriminatorSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        _validate(self)

    def tokenizer_config(self) -> TokenizerConfig:
        """The model architecture (generative decoder in stage 2)."""
        return self.model.tokenizer_config(generative=self.train.stage == 2)


def _validate(cfg: TrainConfig) -> None:
    t, d, o, lo = cfg.train, cfg.data, cfg.optim, cfg.loss
    checks = [
        (t.stage in (1, 2), f"train.stage must be 1 or 2, got {t.stage}"),
        (t.steps > 0, f"train.steps must be positive, got {t.steps}"),
        (t.precision in PRECISIONS, f"train.precision must be fp32, bf16 or fp16, got {t.precision!r}"),
        (t.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {t.device!r}"),
        (t.ckpt_every > 0, "train.ckpt_every must be positive"),
        (t.keep_checkpoints > 0, "train.keep_checkpoints must be positive"),
        (0 < t.timeout_minutes <= 1e6, f"train.timeout_minutes must be above 0 and at most 1e6, got {t.timeout_minutes}"),
        (t.log_every > 0 and t.image_every > 0, "train.log_every and train.image_every must be positive"),
        (d.layout in ("auto", "folder", "imagenet", "coco", "tar"), f"data.layout must be auto, folder, imagenet, coco or tar, got {d.layout!r}"),
        (d.size > 0 and d.batch_size > 0 and d.workers >= 0 and d.cache_mb >= 0,
         "data.size and data.batch_size must be positive, data.workers and data.cache_mb >= 0"),
        (d.resize is None or d.resize > 0, "data.resize must be positive or null"),
        (d.random_scale is None or 0 < d.random_scale[0] <= d.random_scale[1], "data.random_scale must be (lo, hi) with 0 < lo <= hi"),
        (o.lr > 0 and o.disc_lr > 0, "optim.lr and optim.disc_lr must be positive"),
        (o.grad_accum > 0 and o.warmup_steps >= 0, "optim.grad_accum must be positive and optim.warmup_steps >= 0"),
        *((False, message) for message in schedule_errors(o, t.steps)),
        (0.0 <= o.ema_decay < 1.0, "optim.ema_decay must be in [0, 1)"),
        (o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip must be positive or null"),
        (lo.perceptual_net in ("vgg", "alex"), f"loss.perceptual_net must be vgg or alex, got {lo.perceptual_net!r}"),
        (0.0 <= lo.lecam_decay < 1.0, "loss.lecam_decay must be in [0, 1)"),
        (cfg.init.weights in ("ema", "raw"), f"init.weights must be ema or raw, got {cfg.init.weights!r}"),
        (not cfg.init.deepen or cfg.init.checkpoint is not None, "init.deepen applies to a start from init.checkpoint; set it"),
        (cfg.eval.size > 0 and cfg.eval.every > 0 and cfg.eval.max_images > 0, "eval.size, eval.every and eval.max_images must be positive"),
    ]
    weights = {k: v for k, v in dataclasses.asdict(lo).items() if k.endswith("_weight") and isinstance(v, float)}
    checks += [(v >= 0, f"loss.{k} must be >= 0, got {v}") for k, v in weights.items()]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if t.stage == 2 and cfg.init.checkpoint is None:
        raise ConfigError("stage 2 starts from a stage-1 model: set init.checkpoint")
    if d.size % cfg.tokenizer_config().downsample:
        raise ConfigError(f"data.size {d.size} is not a multiple of the downsample factor {cfg.tokenizer_config().downsample}")


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config (or the defaults when `path` is None) and apply `--set` overrides."""
    return load_settings(TrainConfig, path, overrides)
