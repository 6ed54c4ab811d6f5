"""The training loop for both WeTok stages, readable top to bottom.

    train(config, data, run_dir, resume=...)  ->  exit status

One process, or one per device under torchrun (DistributedDataParallel; gloo on CPU, nccl on
GPU). Each optimizer step: `grad_accum` micro-batches through the tokenizer (generator loss),
then, once the GAN has started, the same micro-batches' reconstructions through the
discriminator (hinge + LeCAM). Rank 0 writes checkpoints, logs, grids and the final model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..files import atomic_write
from ..data import RandomCrop, evaluation_images, training_batches
from ..errors import ConfigError, WeightsNotFoundError, WetokError
from ..losses import LeCAM, PatchDiscriminator
from ..tokenizer import Tokenizer
from .config import TrainConfig
from .distributed import Distributed, all_reduce_max, all_reduce_mean, gather_objects, init_distributed, shutdown
from .ema import EMA
from .initial import load_initial_weights
from .objective import discriminator_terms, generator_terms
from .reporting import Reporter, heldout_metrics
from .schedule import lr_factor
from .state import latest_checkpoint, list_checkpoints, save_checkpoint, set_aside_newer

EXPORT_DIR = "model"


class TrainingDiverged(WetokError):
    """A loss term became NaN or infinite."""


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
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = cfg.optim
    return Parts(
        model=model,
        ema=EMA(model, optim.ema_decay),
        discriminator=discriminator,
        lecam=LeCAM(cfg.loss.lecam_decay).to(device),
        optimizer=torch.optim.Adam(trainable, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay),
        disc_optimizer=torch.optim.Adam(discriminator.parameters(), lr=optim.disc_lr, betas=optim.betas, weight_decay=optim.weight_decay),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16"),
    ), notes


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
        from ..lpips import LPIPS
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
    return net.to(device).eval().requires_grad_(False)


def checkpoint_payload(cfg: TrainConfig, parts: Parts, info: Distributed) -> dict[str, Any]:
    """The state to save (gathers every rank's RNG state; call on all ranks)."""
    rng = {"cpu": torch.get_rng_state()}
    if info.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(info.device)
    return {
        "config": cfg.to_dict(),
        "tokenizer_config": parts.model.config.to_dict(),
        "model": parts.model.state_dict(),
        "ema": parts.ema.state_dict(),
        "discriminator": parts.discriminator.state_dict(),
        "lecam": parts.lecam.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "disc_optimizer": parts.disc_optimizer.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": gather_objects(rng, info),
    }


def restore(parts: Parts, state: dict[str, Any], info: Distributed) -> None:
    """Load a checkpoint into `parts` and this rank's RNG state (if the world size is unchanged)."""
    parts.model.load_state_dict(state["model"])
    parts.ema.load_state_dict(state["ema"])
    parts.discriminator.load_state_dict(state["discriminator"])
    parts.lecam.load_state_dict(state["lecam"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.disc_optimizer.load_state_dict(state["disc_optimizer"])
    parts.scaler.load_state_dict(state["scaler"])
    if len(state["rng"]) == info.world:
        rng = state["rng"][info.rank]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and info.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], info.device)


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step (a checkpoint is then written)."""

    def __init__(self) -> None:
        self.signal = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_finite(step: int, parts: dict[str, torch.Tensor], stop: StopRequest, info: Distributed) -> bool:
    """Raise `TrainingDiverged` naming the step (1-based, as checkpoints count) and the term when
    any rank saw a NaN/inf loss; return whether
    any rank was asked to stop. One all-reduce for both questions."""
    bad = [name for name, value in parts.items() if not math.isfinite(float(value))]
    nan_flag, stop_flag = all_reduce_max([1.0 if bad else 0.0, 1.0 if stop.signal else 0.0], info)
    if nan_flag:
        where = f"loss term {', '.join(bad)}" if bad else "a loss term on another process"
        raise TrainingDiverged(f"step {step}: {where} is not finite; stopped, the last good checkpoint is kept")
    return bool(stop_flag)


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


def _resolve_resume(run_dir: Path, resume: bool, info: Distributed) -> dict[str, Any] | None:
    """The checkpoint to continue from (None for a fresh run); a fresh run refuses a used RUN_DIR."""
    if not resume:
        if list_checkpoints(run_dir):
            raise WetokError(f"{run_dir} already holds a run's checkpoints: pass --resume to continue it, or choose another --output")
        return None
    found = latest_checkpoint(run_dir)
    if found is None:
        raise WetokError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    if info.main:
        for path in set_aside_newer(run_dir, int(found[1]["step"])):
            print(f"wetok train: unreadable checkpoint set aside as {path}")
    return found[1]


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


def train(cfg: TrainConfig, data: str | Path, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> int:
    """Run (or continue) training; returns 0 when finished, 128 + signal when interrupted.

    Raises `WetokError` for user errors and `TrainingDiverged` for NaN/inf losses.
    """
    run_dir = Path(run_dir)
    info = init_distributed(cfg.train.device)
    finished = False
    try:
        status = _train(cfg, Path(data), run_dir, resume, info, progress)
        finished = True
        return status
    finally:
        shutdown(info, synchronize=finished)  # after a normal end rank 0 may still be exporting


def _train(cfg: TrainConfig, data: Path, run_dir: Path, resume: bool, info: Distributed, progress: bool) -> int:
    t, lo, optim = cfg.train, cfg.loss, cfg.optim
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    say = print if info.main else (lambda *a, **k: None)
    resumed = _resolve_resume(run_dir, resume, info)

    # ---- models, optimizers, starting point ---------------------------------------------------
    parts, notes = build_parts(cfg, info.device, load_initial=resumed is None)
    model = parts.model
    if cfg.data.size % model.downsample:
        raise ConfigError(f"data.size {cfg.data.size} is not a multiple of the downsample factor {model.downsample}")
    start = 0
    if resumed is not None:
        restore(parts, resumed, info)
        start = int(resumed["step"])
        notes.append(f"resumed at step {start}")
    else:
        torch.manual_seed(t.seed + 1000 * info.rank)  # per-rank stream (noise) from here on
    perceptual = build_perceptual(cfg, info.device)
    if perceptual is None:
        notes.append("perceptual (LPIPS) loss off: loss.perceptual_weight is 0")
    if start >= t.steps:
        say(f"wetok train: the run is already at step {start} of {t.steps}; nothing to do (raise --steps to continue)")
    wrapped_model: nn.Module = model
    wrapped_disc: nn.Module = parts.discriminator
    if info.enabled:
        ids = [info.device.index] if info.device.type == "cuda" else None
        wrapped_model = DDP(model, device_ids=ids)
        wrapped_disc = DDP(parts.discriminator, device_ids=ids)
    if info.main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WetokError(f"{run_dir}: cannot create the run directory ({exc.strerror or exc})") from None
        atomic_write(run_dir / "config.yaml", lambda tmp: tmp.write_text(cfg.to_yaml()))
    say(f"wetok train: {model.config.describe()}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    say(f"wetok train: stage {t.stage}, {info.world} process(es) on {info.device}, batch {cfg.data.batch_size} x {optim.grad_accum} "
        f"x {info.world} of {cfg.data.size}px, {t.precision}")
    for note in notes:
        say(f"wetok train: {note}")

    # ---- data ----------------------------------------------------------------------------------
    transform = RandomCrop(cfg.data.size, cfg.data.resize, cfg.data.random_scale, cfg.data.flip)
    batches, n_sources = training_batches(
        data, transform, batch_size=cfg.data.batch_size, workers=cfg.data.workers, layout=cfg.data.layout,
        split=cfg.data.split, seed=t.seed, rank=info.rank, world=info.world, start_batch=start * optim.grad_accum,
        cache_mb=cfg.data.cache_mb,
    )
    say(f"wetok train: {n_sources} source file(s) in {data}")
    heldout = evaluation_images(cfg.eval.folder, cfg.eval.size, cfg.eval.max_images) if cfg.eval.folder and info.main else None
    reporter = Reporter(run_dir, resumed_at=start) if info.main else None

    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    autocast = functools.partial(torch.autocast, info.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    gen_params = [p for p in model.parameters() if p.requires_grad]
    disc_params = list(parts.discriminator.parameters())
    last_ckpt_time = time.monotonic()
    skipped_total = 0
    status = 0
    step = start

    def save(at: int) -> None:
        payload = checkpoint_payload(cfg, parts, info)
        if info.main:
            path = save_checkpoint(run_dir, at, payload, t.keep_checkpoints)
            say(f"wetok train: checkpoint {path}")

    def evaluate(at: int) -> None:
        if heldout is None or reporter is None:
            return
        values, recon = heldout_metrics(parts.ema.model, heldout)
        reporter.evaluation(at, values)
        reporter.grid(at, heldout, recon)
        say(f"wetok train: step {at}: held-out PSNR {values['psnr']:.2f} dB, SSIM {values['ssim']:.4f} "
            f"(EMA weights, {len(heldout)} images)")

    bar = None
    if info.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=t.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)
    window_start, window_images = time.monotonic(), 0
    with StopRequest() as stop:
        for step in range(start, t.steps):
            factor = lr_factor(step, t.steps, optim)
            for group in parts.optimizer.param_groups:
                group["lr"] = optim.lr * factor
            for group in parts.disc_optimizer.param_groups:
                group["lr"] = optim.disc_lr * factor
            gan_on = lo.gan_weight > 0 and step >= lo.gan_start

            # ---- generator (tokenizer) ----
            set_train_mode(model, t.stage)
            parts.discriminator.requires_grad_(False)
            parts.optimizer.zero_grad(set_to_none=True)
            micro: list[tuple[torch.Tensor, torch.Tensor]] = []
            logged: dict[str, torch.Tensor] = {}
            for i in range(optim.grad_accum):
                images, skipped = next(batches)
                skipped_total += skipped
                images = images.to(info.device, non_blocking=True)
                sync = i == optim.grad_accum - 1 or not info.enabled
                with (contextlib.nullcontext() if sync else wrapped_model.no_sync()), autocast():
                    out = wrapped_model(images)
                    terms = generator_terms(
                        images, out, lo, stage=t.stage, perceptual=perceptual,
                        discriminator=parts.discriminator if gan_on else None,
                        last_layer=model.decoder.conv_out.weight,
                    )
                _scaled_backward(parts.scaler, terms.total / optim.grad_accum)
                micro.append((images, out.reconstruction.detach()))
                for name, value in terms.parts.items():
                    logged[name] = logged.get(name, 0) + value / optim.grad_accum
            if t.stage == 1 and step % t.log_every == 0:
                tokens = out.quantizer.tokens
                for g in range(tokens.shape[-1]):
                    logged[f"usage/group{g}"] = torch.tensor(tokens[..., g].unique().numel() / model.quantizer.codebook_size)
            logged["grad_norm"] = torch.tensor(_optimizer_step(parts.scaler, parts.optimizer, gen_params, optim.grad_clip))

            # ---- discriminator ----
            parts.discriminator.requires_grad_(True)
            if gan_on:
                parts.discriminator.train()
                parts.disc_optimizer.zero_grad(set_to_none=True)
                for i, (images, recon) in enumerate(micro):
                    sync = i == len(micro) - 1 or not info.enabled
                    with (contextlib.nullcontext() if sync else wrapped_disc.no_sync()), autocast():
                        dterms = discriminator_terms(wrapped_disc, parts.lecam, images, recon, lo)
                    _scaled_backward(parts.scaler, dterms.total / optim.grad_accum)
                    for name, value in dterms.parts.items():
                        logged[name] = logged.get(name, 0) + value / optim.grad_accum
                logged["disc_grad_norm"] = torch.tensor(_optimizer_step(parts.scaler, parts.disc_optimizer, disc_params, optim.grad_clip))
            parts.scaler.update()
            parts.ema.update(model)

            losses = {k: v for k, v in logged.items() if not k.startswith("usage/") and not k.endswith("grad_norm")}
            done = step + 1
            stopping = _check_finite(done, losses, stop, info)
            window_images += cfg.data.batch_size * optim.grad_accum * info.world

            # ---- reporting ----
            if step % t.log_every == 0 or done == t.steps:
                values = all_reduce_mean({k: float(v) for k, v in logged.items()}, info)
                elapsed = time.monotonic() - window_start
                values["images_per_s"] = window_images / max(elapsed, 1e-9)
                values["lr"] = optim.lr * factor
                values["disc_lr"] = optim.disc_lr * factor
                values["unreadable_images"] = float(skipped_total)
                window_start, window_images = time.monotonic(), 0
                if reporter is not None:
                    reporter.scalars(done, {(k if "/" in k else f"train/{k}"): v for k, v in values.items()})
                if bar is not None:
                    bar.set_postfix(loss=f"{values['total']:.4f}", l1=f"{values['l1']:.4f}", img_s=f"{values['images_per_s']:.1f}")
            if reporter is not None and done % t.image_every == 0:
                images, recon = micro[0]
                reporter.grid(done, images.cpu(), recon.float().cpu())
            if bar is not None:
                bar.update(1)
            if done % cfg.eval.every == 0 or done == t.steps:
                evaluate(done)
            by_time = t.ckpt_minutes is not None and time.monotonic() - last_ckpt_time >= 60 * t.ckpt_minutes
            by_time = bool(all_reduce_max([1.0 if by_time else 0.0], info)[0]) if t.ckpt_minutes is not None else False
            if done % t.ckpt_every == 0 or done == t.steps or stopping or by_time:
                save(done)
                last_ckpt_time = time.monotonic()
            if stopping:
                say(f"\nwetok train: stopped by signal {stop.signal or 'on another process'} after step {done}; continue with --resume")
                status = 128 + (stop.signal or signal.SIGTERM)
                break
    if bar is not None:
        bar.close()
    if skipped_total:
        say(f"wetok train: {skipped_total} unreadable image(s) skipped on rank 0")
    if status == 0 and info.main:
        export = parts.ema.model.save(run_dir / EXPORT_DIR)
        say(f"wetok train: finished {t.steps} steps; EMA weights exported to {export} (wetok.load reads it)")
    if reporter is not None:
        reporter.close()
    return status
