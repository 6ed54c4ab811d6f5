"""The training loop for both WeTok stages, readable top to bottom.

    train(config, data, run_dir, resume=...)  ->  exit status

One process, or one per device under torchrun (DistributedDataParallel; gloo on CPU, nccl on
GPU). Each optimizer step: `grad_accum` micro-batches through the tokenizer (generator loss),
then, once the GAN has started, the same micro-batches' reconstructions through the
discriminator (hinge + LeCAM). Rank 0 writes checkpoints, logs, grids and the final model.

Randomness: the weights from `train.seed`; data order and augmentation from per-sample seeds
(`data.py`); the generative decoder's noise from (seed, rank, step, micro-batch)
(`decoder_noise`); nothing else draws from the global RNG, whose per-rank state a checkpoint
still saves and a resumed run restores last. So a resumed run, or a torchrun restart (which
resumes by itself), continues exactly as the uninterrupted run would have, on CPU.

Memory layout (`train.channels_last`; by default on for bf16/fp16, off for fp32): the
tokenizer, the discriminator, the LPIPS network and each batch are channels_last (NHWC); the
optimizer state follows its parameters. The EMA copy and every checkpoint stay contiguous (NCHW),
so a checkpoint is the same whichever layout wrote it, and a run resumes under either setting.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..distributed import Distributed, all_reduce_max, all_reduce_mean, restart_count
from ..errors import ConfigError, WeightsNotFoundError, WetokError
from ..losses import LeCAM, PatchDiscriminator
from ..runs.checkpoints import latest_checkpoint, resolve_resume, restore_rng, rng_states, save_checkpoint
from ..runs.ema import EMA
from ..runs.job import run_job
from ..runs.logs import RunLog, write_run_config
from ..runs.schedule import lr_factor
from ..runs.signals import StopRequest, check_finite, run_steps
from ..tokenizer import Tokenizer
from .config import TrainConfig, TrainSection
from .data import RandomCrop, evaluation_images, sample_seed, training_batches
from .initial import load_initial_weights
from .objective import discriminator_terms, generator_terms
from .reporting import heldout_metrics, reconstruction_grid

COMMAND = "wetok train"
EXPORT_DIR = "model"


@dataclasses.dataclass
class Parts:
    """Everything a checkpoint holds, built once per run."""

    model: Tokenizer
    ema: EMA
    discriminator: PatchDiscriminator
    lecam: LeCAM
    optimizer: torch.optim.Optimizer
    disc_optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def build_parts(cfg: TrainConfig, device: torch.device, *, load_initial: bool = True) -> tuple[Parts, list[str]]:
    """Models, optimizers and scaler at their starting point (random or `init.checkpoint`).
    Returns them and lines for the log. `load_initial=False` skips reading `init.checkpoint`:
    for a resumed run, whose own checkpoint then replaces every weight (the file may be gone)."""
    notes = []
    torch.manual_seed(cfg.train.seed)
    model = Tokenizer(cfg.tokenizer_config())
    model.quantizer.sample_weight = cfg.loss.sample_entropy_weight
    model.quantizer.codebook_weight = cfg.loss.codebook_entropy_weight
    discriminator = PatchDiscriminator(filters=cfg.discriminator.filters, layers=cfg.discriminator.layers)
    if cfg.init.checkpoint is not None and load_initial:
        disc_state = load_initial_weights(model, cfg.init.checkpoint, cfg.init.weights, deepened=cfg.init.deepen)
        notes.append(f"weights from {cfg.init.checkpoint} ({cfg.init.weights})"
                     + (", residual blocks it lacks starting as identities" if cfg.init.deepen else ""))
        if cfg.train.stage == 1 and cfg.init.discriminator and disc_state is not None:
            try:
                discriminator.load_state_dict(disc_state)
                notes.append("discriminator from the same checkpoint")
            except RuntimeError:
                notes.append("the checkpoint's discriminator does not fit discriminator.*: starting a fresh one")
    if cfg.train.stage == 2:
        model.encoder.requires_grad_(False)
        notes.append("stage 2: encoder and quantizer frozen, generative decoder trained, new discriminator")
    model.to(device)
    discriminator.to(device)
    optim = cfg.optim
    ema = EMA(model, optim.ema_decay)  # copied before the layout changes: the EMA weights stay contiguous
    # float32 master weights (autocast computes in bf16/fp16); the tokenizer then keeps its
    # inputs in the chosen layout too
    model.set_execution("fp32", channels_last=cfg.train.nhwc)
    discriminator.to(memory_format=memory_format(cfg.train))
    trainable = [p for p in model.parameters() if p.requires_grad]
    return Parts(
        model=model,
        ema=ema,
        discriminator=discriminator,
        lecam=LeCAM(cfg.loss.lecam_decay).to(device),
        optimizer=torch.optim.Adam(trainable, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay),
        disc_optimizer=torch.optim.Adam(discriminator.parameters(), lr=optim.disc_lr, betas=optim.betas, weight_decay=optim.weight_decay),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16"),
    ), notes


def memory_format(train: TrainSection) -> torch.memory_format:
    """torch.channels_last when the run uses it (`TrainSection.nhwc`), else torch.contiguous_format."""
    return torch.channels_last if train.nhwc else torch.contiguous_format


def set_train_mode(model: Tokenizer, stage: int) -> None:
    """Training mode, except that stage 2 keeps the frozen encoder and quantizer in eval mode."""
    model.train()
    if stage == 2:
        model.encoder.eval()
        model.quantizer.eval()


def build_perceptual(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    """The frozen LPIPS network, or None with `perceptual_weight: 0`."""
    if cfg.loss.perceptual_weight == 0:
        return None
    try:
        from ..metrics.lpips import LPIPS
    except ImportError:
        raise WetokError("LPIPS is not available in this wetok build: set loss.perceptual_weight: 0") from None
    lo = cfg.loss
    try:
        net = LPIPS(lo.perceptual_net, backbone_weights=lo.perceptual_backbone_weights, head_weights=lo.perceptual_head_weights)
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(
            f"{exc} (training config: loss.perceptual_backbone_weights / loss.perceptual_head_weights; "
            "or loss.perceptual_weight: 0 to train without LPIPS)"
        ) from None
    return net.to(device, memory_format=memory_format(cfg.train)).eval().requires_grad_(False)


def checkpoint_payload(cfg: TrainConfig, parts: Parts, info: Distributed) -> dict[str, Any]:
    """The state to save (gathers every rank's RNG state; call on all ranks). Every tensor is
    contiguous (`contiguous_state`): the file does not depend on `train.channels_last`."""
    return contiguous_state({
        "config": cfg.to_dict(),
        "tokenizer_config": parts.model.config.to_dict(),
        "model": parts.model.state_dict(),
        "ema": parts.ema.state_dict(),
        "discriminator": parts.discriminator.state_dict(),
        "lecam": parts.lecam.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "disc_optimizer": parts.disc_optimizer.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": rng_states(info),
    })


def contiguous_state(value: Any) -> Any:
    """`value` with every tensor inside (dicts and lists, nested) made contiguous (NCHW for 4-D
    weights; a contiguous tensor is itself, a channels_last one a copy). Dicts are copied, never
    changed: an optimizer's `state_dict()` shares its per-parameter dicts with the live state;
    a module's state dict keeps its class and `_metadata`."""
    if isinstance(value, torch.Tensor):
        return value.contiguous()
    if isinstance(value, dict):
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = contiguous_state(item)
        return out
    if isinstance(value, list):
        return [contiguous_state(item) for item in value]
    return value


def follow_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor of its parameter's shape (Adam's moments) that
    parameter's memory layout, after `load_state_dict` from a (contiguous) checkpoint: the
    update is elementwise, so the values are the same either way, and matching layouts keep
    the fused update on its fast path."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, item in state.items():
                if isinstance(item, torch.Tensor) and item.shape == param.shape and item.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=item.dtype).copy_(item)


def restore(parts: Parts, state: dict[str, Any], info: Distributed, *, rng: bool = True) -> None:
    """Load a checkpoint into `parts` and (with `rng`) this rank's RNG state (`wetok.runs.checkpoints.restore_rng`)."""
    parts.model.load_state_dict(state["model"])
    parts.ema.load_state_dict(state["ema"])
    parts.discriminator.load_state_dict(state["discriminator"])
    parts.lecam.load_state_dict(state["lecam"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.disc_optimizer.load_state_dict(state["disc_optimizer"])
    follow_parameter_layout(parts.optimizer)
    follow_parameter_layout(parts.disc_optimizer)
    parts.scaler.load_state_dict(state["scaler"])
    if rng:
        restore_rng(state["rng"], info)


def decoder_noise(cfg: TrainConfig, model: Tokenizer, images: torch.Tensor, rank: int, step: int, micro: int) -> torch.Tensor | None:
    """The generative decoder's noise for micro-batch `micro` of optimizer step `step` on `rank`:
    standard normal of the latent's shape, from a CPU generator seeded by (train.seed, rank, step,
    micro), so that it depends on nothing a resume could shift. None for the plain decoder."""
    if not model.config.generative:
        return None
    f = model.downsample
    shape = (images.shape[0], model.config.latent_channels, images.shape[2] // f, images.shape[3] // f)
    seed = sample_seed(cfg.train.seed + 0x5EED, step * cfg.optim.grad_accum + micro, rank)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return noise.to(images.device, memory_format=memory_format(cfg.train))


def _scaled_backward(scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
    scaler.scale(loss).backward()


def _optimizer_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], clip: float | None) -> float:
    """Unscale, clip (when set), step; returns the gradient norm before clipping."""
    scaler.unscale_(optimizer)
    if clip is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    else:
        norm = float(torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    scaler.step(optimizer)
    return norm


def export_latest(run_dir: str | Path, destination: str | Path | None = None) -> Path:
    """Write the EMA weights of the run's latest checkpoint as a model directory (default
    RUN_DIR/model) that `wetok.load` reads; returns the directory."""
    from ..config import TokenizerConfig

    run_dir = Path(run_dir)
    found = latest_checkpoint(run_dir)
    if found is None:
        raise WetokError(f"{run_dir}: no training checkpoint to export")
    _, state = found
    model = Tokenizer(TokenizerConfig.from_dict(state["tokenizer_config"]))
    model.load_state_dict(state["ema"]["model"])
    return model.save(Path(destination) if destination is not None else run_dir / EXPORT_DIR)


def train(cfg: TrainConfig, data: str | Path, run_dir: str | Path, *, resume: bool | str = False, progress: bool = True) -> int:
    """Run (or continue) training; returns 0 when finished, 128 + signal when interrupted.

    `resume`: False (a fresh run; a RUN_DIR with checkpoints is refused), True (continue from
    the latest checkpoint), or "auto" (the latest checkpoint when there is one, else a fresh
    run). A torchrun restart (TORCHELASTIC_RESTART_COUNT > 0, `torchrun --max-restarts N`)
    means "auto": the run resumes by itself (or starts over when the failed attempt wrote no
    checkpoint). On several nodes a healthy node's workers are restarted with the count 0: pass
    "auto" there (`--resume auto`).

    Raises `WetokError` for user errors, `TrainingDiverged` (`wetok.runs.signals`) for NaN/inf losses,
    `CheckpointWriteError` (`wetok.runs.checkpoints`) when a checkpoint cannot be written (the older ones are kept), and
    `PeerLost` when another process of the job stopped (a broken connection, or no answer within
    `train.timeout_minutes`).
    """
    return run_job(cfg.train.device, cfg.train.timeout_minutes, resume,
                   lambda info, mode: _train(cfg, Path(data), Path(run_dir), mode, info, progress))


def _train(cfg: TrainConfig, data: Path, run_dir: Path, resume: bool | str, info: Distributed, progress: bool) -> int:
    """The run on this process: set up, one optimizer step at a time until the last step or a
    stop request, then finish (export, close the logs)."""
    run = _prepare_run(cfg, data, run_dir, resume, info, progress)
    return _finish(run, run_steps(run.start, cfg.train.steps, lambda step, stop: _train_step(run, step, stop)))


# ---- the run's state ------------------------------------------------------------------------------
@dataclasses.dataclass
class _Run:
    """One process's run: what `_prepare_run` sets up once, then the counters the steps advance."""

    cfg: TrainConfig
    info: Distributed
    run_dir: Path
    parts: Parts
    wrapped_model: nn.Module  # parts.model, under DDP when distributed: what the generator step calls
    wrapped_disc: nn.Module  # parts.discriminator, likewise
    gen_params: list[nn.Parameter]  # the tokenizer's trainable parameters (clipped together)
    disc_params: list[nn.Parameter]
    perceptual: nn.Module | None  # frozen LPIPS, or None
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    batches: Iterator[tuple[torch.Tensor, int]]  # (images, how many unreadable ones were skipped)
    heldout: torch.Tensor | None  # rank 0's held-out images (eval.folder), else None
    log: RunLog | None  # rank 0 only
    bar: Any  # rank 0's tqdm progress bar, or None
    say: Callable[..., None]  # print on rank 0, nothing elsewhere
    start: int  # the step the run starts from (0, or the resumed checkpoint's)
    skipped: int = 0  # unreadable images skipped so far on this rank
    last_checkpoint: float = 0.0  # time.monotonic() of the last checkpoint (or of the start)
    window_start: float = 0.0  # the logging window: since when (time.monotonic()) ...
    window_images: int = 0  # ... and how many images all ranks trained on in it


# ---- before the first step ------------------------------------------------------------------------
def _prepare_run(cfg: TrainConfig, data: Path, run_dir: Path, resume: bool | str, info: Distributed, progress: bool) -> _Run:
    """Everything before the first step: the starting point (`_build_models`), the DDP wrappers,
    RUN_DIR/config.yaml and the log header, then the data, the run log and the progress bar;
    last the global RNG (`_seed_global_rng`), so that nothing built here can shift it."""
    t, optim = cfg.train, cfg.optim
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    say = print if info.main else (lambda *a, **k: None)
    parts, perceptual, start, rng, notes = _build_models(cfg, run_dir, resume, info)
    if start >= t.steps:
        say(f"wetok train: the run is already at step {start} of {t.steps}; nothing to do (raise --steps to continue)")
    wrapped_model: nn.Module = parts.model
    wrapped_disc: nn.Module = parts.discriminator
    if info.enabled:
        ids = [info.device.index] if info.device.type == "cuda" else None
        wrapped_model = DDP(parts.model, device_ids=ids)
        wrapped_disc = DDP(parts.discriminator, device_ids=ids)
    if info.main:
        write_run_config(run_dir, cfg.to_yaml())
    model = parts.model
    say(f"wetok train: {model.config.describe()}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    layout = "channels_last" if t.nhwc else "contiguous"
    say(f"wetok train: stage {t.stage}, {info.world} process(es) on {info.device}, batch {cfg.data.batch_size} x {optim.grad_accum} "
        f"x {info.world} of {cfg.data.size}px, {t.precision}, {layout}")
    for note in notes:
        say(f"wetok train: {note}")
    batches, heldout = _build_data(cfg, data, start, info, say)
    # a resumed run (or a torchrun restart that found no checkpoint yet) drops what was logged after `start`
    log = RunLog(run_dir, start if rng is not None or resume == "auto" else None, command=COMMAND) if info.main else None
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    run = _Run(
        cfg=cfg, info=info, run_dir=run_dir, parts=parts, wrapped_model=wrapped_model, wrapped_disc=wrapped_disc,
        gen_params=[p for p in model.parameters() if p.requires_grad], disc_params=list(parts.discriminator.parameters()),
        perceptual=perceptual, batches=batches, heldout=heldout, log=log, bar=None, say=say, start=start,
        autocast=functools.partial(torch.autocast, info.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        last_checkpoint=time.monotonic(),
    )
    run.bar = _progress_bar(cfg, start, info, progress)
    run.window_start = time.monotonic()
    _seed_global_rng(cfg, info, rng)
    return run


def _seed_global_rng(cfg: TrainConfig, info: Distributed, rng: dict[str, Any] | None) -> None:
    """The global RNG as the first step finds it: the resumed checkpoint's state of this rank, or
    this rank's own stream (seed + 1000 x rank) for a fresh run. Training draws nothing from it
    (see the module's docstring); set last, so that whatever ever draws from it resumes exactly too."""
    if rng is not None:
        restore_rng(rng["rng"], info)
    else:
        torch.manual_seed(cfg.train.seed + 1000 * info.rank)


def _build_models(
    cfg: TrainConfig, run_dir: Path, resume: bool | str, info: Distributed
) -> tuple[Parts, nn.Module | None, int, dict[str, Any] | None, list[str]]:
    """The starting point: the parts (random, `init.checkpoint`, or the resumed checkpoint), the
    LPIPS network, the starting step, the checkpoint's RNG states (None for a fresh run; applied
    once everything is built) and the notes for the log."""
    resumed = resolve_resume(run_dir, resume, info, command=COMMAND)
    parts, notes = build_parts(cfg, info.device, load_initial=resumed is None)
    if cfg.data.size % parts.model.downsample:
        raise ConfigError(f"data.size {cfg.data.size} is not a multiple of the downsample factor {parts.model.downsample}")
    start = 0
    restarted = f"torchrun restart {restart_count()}: " if resume == "auto" and restart_count() else ""
    if resumed is not None:
        restore(parts, resumed, info, rng=False)
        start = int(resumed["step"])
        notes.append(f"{restarted}resumed at step {start}")
    elif resume == "auto":
        notes.append(f"{restarted}no checkpoint yet, starting the run")
    perceptual = build_perceptual(cfg, info.device)
    if perceptual is None:
        notes.append("perceptual (LPIPS) loss off: loss.perceptual_weight is 0")
    return parts, perceptual, start, None if resumed is None else {"rng": resumed["rng"]}, notes


def _build_data(
    cfg: TrainConfig, data: Path, start: int, info: Distributed, say: Callable[..., None]
) -> tuple[Iterator[tuple[torch.Tensor, int]], torch.Tensor | None]:
    """This rank's training batches, continuing where step `start` left off (the order depends
    on the seed, the rank and the batch count only), and rank 0's held-out images (or None)."""
    d = cfg.data
    transform = RandomCrop(d.size, d.resize, d.random_scale, d.flip)
    batches, n_sources = training_batches(
        data, transform, batch_size=d.batch_size, workers=d.workers, layout=d.layout, split=d.split,
        seed=cfg.train.seed, rank=info.rank, world=info.world, start_batch=start * cfg.optim.grad_accum,
        cache_mb=d.cache_mb,
    )
    say(f"wetok train: {n_sources} source file(s) in {data}")
    heldout = evaluation_images(cfg.eval.folder, cfg.eval.size, cfg.eval.max_images) if cfg.eval.folder and info.main else None
    return batches, heldout


def _progress_bar(cfg: TrainConfig, start: int, info: Distributed, progress: bool) -> Any:
    """Rank 0's tqdm bar over the steps (None elsewhere or with `progress=False`); redrawn at most
    every 30 s when stderr is not a terminal (log files)."""
    if not (info.main and progress):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.train.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)


# ---- one optimizer step ---------------------------------------------------------------------------
def _train_step(run: _Run, step: int, stop: StopRequest) -> int:
    """Optimizer step `step` (0-based): learning rates, the generator, the discriminator (once the
    GAN has started), scaler and EMA, the NaN/stop check, reporting, checkpointing. Returns 0,
    or 128 + the signal when a stop was requested (after writing a checkpoint)."""
    cfg, parts = run.cfg, run.parts
    factor = _set_learning_rates(run, step)
    gan_on = cfg.loss.gan_weight > 0 and step >= cfg.loss.gan_start
    logged, micro = _generator_step(run, step, gan_on)
    parts.discriminator.requires_grad_(True)
    if gan_on:
        _discriminator_step(run, micro, logged)
    parts.scaler.update()
    parts.ema.update(parts.model)

    done = step + 1
    losses = {k: v for k, v in logged.items() if not k.startswith("usage/") and not k.endswith("grad_norm")}
    stopping = check_finite(done, losses, stop, run.info)
    run.window_images += cfg.data.batch_size * cfg.optim.grad_accum * run.info.world
    _report_step(run, step, factor, logged, micro)
    _maybe_checkpoint(run, done, stopping)
    if stopping:
        run.say(f"\nwetok train: stopped by signal {stop.signal or 'on another process'} after step {done}; continue with --resume")
        return 128 + (stop.signal or signal.SIGTERM)
    return 0


def _set_learning_rates(run: _Run, step: int) -> float:
    """Both optimizers' learning rates for `step` (the schedule's factor times each peak); returns the factor."""
    optim = run.cfg.optim
    factor = lr_factor(step, run.cfg.train.steps, optim)
    for group in run.parts.optimizer.param_groups:
        group["lr"] = optim.lr * factor
    for group in run.parts.disc_optimizer.param_groups:
        group["lr"] = optim.disc_lr * factor
    return factor


def _generator_step(
    run: _Run, step: int, gan_on: bool
) -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The tokenizer's update: `grad_accum` micro-batches forward and backward (DDP synchronizing
    on the last), then the optimizer step. Returns the logged terms (averaged over the
    micro-batches, plus codebook usage on stage-1 logging steps and the gradient norm) and each
    micro-batch's (images, detached reconstruction) for the discriminator and the grid."""
    cfg, parts, info = run.cfg, run.parts, run.info
    lo, accum = cfg.loss, cfg.optim.grad_accum
    model = parts.model
    set_train_mode(model, cfg.train.stage)
    parts.discriminator.requires_grad_(False)
    parts.optimizer.zero_grad(set_to_none=True)
    micro: list[tuple[torch.Tensor, torch.Tensor]] = []
    logged: dict[str, torch.Tensor] = {}
    for i in range(accum):
        images, skipped = next(run.batches)
        run.skipped += skipped
        images = images.to(info.device, non_blocking=True).contiguous(memory_format=memory_format(cfg.train))
        sync = i == accum - 1 or not info.enabled
        noise = decoder_noise(cfg, model, images, info.rank, step, i)
        with (contextlib.nullcontext() if sync else run.wrapped_model.no_sync()), run.autocast():
            out = run.wrapped_model(images, noise=noise)
            terms = generator_terms(
                images, out, lo, stage=cfg.train.stage, perceptual=run.perceptual,
                discriminator=parts.discriminator if gan_on else None,
                last_layer=model.decoder.conv_out.weight,
            )
        _scaled_backward(parts.scaler, terms.total / accum)
        micro.append((images, out.reconstruction.detach()))
        for name, value in terms.parts.items():
            logged[name] = logged.get(name, 0) + value / accum
    if cfg.train.stage == 1 and step % cfg.train.log_every == 0:
        tokens = out.quantizer.tokens
        for g in range(tokens.shape[-1]):
            logged[f"usage/group{g}"] = torch.tensor(tokens[..., g].unique().numel() / model.quantizer.codebook_size)
    logged["grad_norm"] = torch.tensor(_optimizer_step(parts.scaler, parts.optimizer, run.gen_params, cfg.optim.grad_clip))
    return logged, micro


def _discriminator_step(run: _Run, micro: list[tuple[torch.Tensor, torch.Tensor]], logged: dict[str, torch.Tensor]) -> None:
    """The discriminator's update on the same micro-batches' originals and reconstructions (hinge
    + LeCAM, DDP synchronizing on the last); adds its terms and gradient norm to `logged`."""
    parts, info, optim = run.parts, run.info, run.cfg.optim
    parts.discriminator.train()
    parts.disc_optimizer.zero_grad(set_to_none=True)
    for i, (images, recon) in enumerate(micro):
        sync = i == len(micro) - 1 or not info.enabled
        with (contextlib.nullcontext() if sync else run.wrapped_disc.no_sync()), run.autocast():
            dterms = discriminator_terms(run.wrapped_disc, parts.lecam, images, recon, run.cfg.loss)
        _scaled_backward(parts.scaler, dterms.total / optim.grad_accum)
        for name, value in dterms.parts.items():
            logged[name] = logged.get(name, 0) + value / optim.grad_accum
    logged["disc_grad_norm"] = torch.tensor(_optimizer_step(parts.scaler, parts.disc_optimizer, run.disc_params, optim.grad_clip))


# ---- after each step ------------------------------------------------------------------------------
def _report_step(
    run: _Run, step: int, factor: float, logged: dict[str, torch.Tensor], micro: list[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Scalars every `log_every` steps and at the end (averaged over the ranks, with throughput,
    learning rates and unreadable images), the training grid every `image_every` steps, the
    progress bar, and the held-out evaluation every `eval.every` steps and at the end."""
    cfg, t, optim = run.cfg, run.cfg.train, run.cfg.optim
    done = step + 1
    if step % t.log_every == 0 or done == t.steps:
        values = all_reduce_mean({k: float(v) for k, v in logged.items()}, run.info)
        elapsed = time.monotonic() - run.window_start
        values["images_per_s"] = run.window_images / max(elapsed, 1e-9)
        values["lr"] = optim.lr * factor
        values["disc_lr"] = optim.disc_lr * factor
        values["unreadable_images"] = float(run.skipped)
        run.window_start, run.window_images = time.monotonic(), 0
        if run.log is not None:
            run.log.scalars(done, {(k if "/" in k else f"train/{k}"): v for k, v in values.items()})
        if run.bar is not None:
            run.bar.set_postfix(loss=f"{values['total']:.4f}", l1=f"{values['l1']:.4f}", img_s=f"{values['images_per_s']:.1f}")
    if run.log is not None and done % t.image_every == 0:
        images, recon = micro[0]
        run.log.image(done, "reconstructions", reconstruction_grid(images.cpu(), recon.float().cpu()))
    if run.bar is not None:
        run.bar.update(1)
    if done % cfg.eval.every == 0 or done == t.steps:
        _evaluate(run, done)


def _evaluate(run: _Run, at: int) -> None:
    """Rank 0, with held-out images: PSNR / SSIM of the EMA weights to eval.jsonl, and a grid."""
    if run.heldout is None or run.log is None:
        return
    values, recon = heldout_metrics(run.parts.ema.model, run.heldout)
    run.log.evaluation(at, values)
    run.log.image(at, "reconstructions", reconstruction_grid(run.heldout, recon))
    run.say(f"wetok train: step {at}: held-out PSNR {values['psnr']:.2f} dB, SSIM {values['ssim']:.4f} "
            f"(EMA weights, {len(run.heldout)} images)")


def _maybe_checkpoint(run: _Run, done: int, stopping: bool) -> None:
    """A checkpoint after step `done` every `ckpt_every` steps, at the end, on a stop request, or
    when `ckpt_minutes` passed on any rank (all ranks agree: saving gathers their RNG states)."""
    t = run.cfg.train
    by_time = t.ckpt_minutes is not None and time.monotonic() - run.last_checkpoint >= 60 * t.ckpt_minutes
    by_time = bool(all_reduce_max([1.0 if by_time else 0.0], run.info)[0]) if t.ckpt_minutes is not None else False
    if done % t.ckpt_every == 0 or done == t.steps or stopping or by_time:
        payload = checkpoint_payload(run.cfg, run.parts, run.info)
        if run.info.main:
            path = save_checkpoint(run.run_dir, done, payload, t.keep_checkpoints)
            run.say(f"wetok train: checkpoint {path}")
        run.last_checkpoint = time.monotonic()


def _finish(run: _Run, status: int) -> int:
    """Close the bar, note unreadable images, export the EMA weights to RUN_DIR/model (rank 0,
    a finished run only) and close the logs; returns `status`."""
    if run.bar is not None:
        run.bar.close()
    if run.skipped:
        run.say(f"wetok train: {run.skipped} unreadable image(s) skipped on rank 0")
    if status == 0 and run.info.main:
        export = run.parts.ema.model.save(run.run_dir / EXPORT_DIR)
        run.say(f"wetok train: finished {run.cfg.train.steps} steps; EMA weights exported to {export} (wetok.load reads it)")
    if run.log is not None:
        run.log.close()
    return status
