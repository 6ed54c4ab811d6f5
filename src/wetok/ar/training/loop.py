"""The generator's training loop, readable top to bottom.

    train_ar(config, shards, run_dir, resume=...)  ->  exit status

One process, or one per device under torchrun: DistributedDataParallel (`train.parallel: ddp`)
or parameters sharded with torch.distributed's `fully_shard` (`fsdp`); gloo on CPU, nccl on GPU.
Each optimizer step: `grad_accum` micro-batches of token sequences (`data.py`) through the
teacher-forced transformer, the summed sub-token cross-entropy backwards, clipping, AdamW, the
EMA. Rank 0 writes checkpoints, logs, sample grids and the exported model.

Randomness: the initial weights from `train.seed`; the batches from (seed, world, micro-batch
index) (`data.py`); dropout and label dropout from the global RNG, seeded per rank for a fresh run
and restored from the checkpoint on resume. So on the CPU a resumed run's losses equal those of
the uninterrupted run, in one process or several (with the same number of processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...distributed import Distributed, all_reduce_max, all_reduce_mean
from ...errors import WetokError
from ...runs.checkpoints import latest_checkpoint, resolve_resume, restore_rng, rng_states, save_checkpoint
from ...runs.ema import EMA
from ...runs.job import run_job
from ...runs.logs import RunLog, write_run_config
from ...runs.schedule import lr_factor
from ...runs.signals import StopRequest, check_finite, run_steps
from ...tokenizer import Tokenizer
from ..config import TransformerConfig
from ..model import Transformer
from ..objective import subtoken_losses
from ..shards import TokenShards, open_shards
from ..weights import load as load_generator
from ..weights import save as save_generator
from .config import ARTrainConfig
from .data import TokenBatches

CHECKPOINT_FORMAT = "wetok-ar-train"
EXPORT_DIR = "model"
COMMAND = "wetok train-ar"


@dataclasses.dataclass
class Parts:
    """What a checkpoint holds: the generator (sharded under FSDP), its optimizer, the gradient
    scaler and the EMA (or None)."""

    model: Transformer
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ema: EMA | None


# ---- the pieces ---------------------------------------------------------------------------------
def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two groups, as the original: the matrices (every parameter of two or more
    dimensions: embeddings, projections, heads) with `weight_decay`, the rest (norm scales) without."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def resolve_tokenizer(cfg: ARTrainConfig, shards: TokenShards, initial: Transformer | None,
                      device: torch.device) -> Tokenizer | None:
    """The shards' tokenizer, checked against their manifest: `tokenizer.model`, else the one
    the initial generator carries, else the preset the manifest names; None when there is none
    (then no sample grids, and the exported generator carries no tokenizer)."""
    from ...weights import load as load_tokenizer
    from ...weights import weights_fingerprint

    if cfg.tokenizer.model is not None:
        source, tokenizer = cfg.tokenizer.model, load_tokenizer(cfg.tokenizer.model, config=cfg.tokenizer.config, device=device)
    elif initial is not None and initial.tokenizer is not None:
        source, tokenizer = str(cfg.init.checkpoint), initial.tokenizer.to(device)
    elif shards.manifest.tokenizer.get("preset"):
        source = shards.manifest.tokenizer["preset"]
        tokenizer = load_tokenizer(source, device=device)
    else:
        return None
    shards.check_tokenizer(tokenizer.config, weights_fingerprint(tokenizer), str(source))
    return tokenizer.eval().requires_grad_(False)


def generator_config(cfg: ARTrainConfig, shards: TokenShards, initial: Transformer | None) -> TransformerConfig:
    """The generator trained: the initial checkpoint's (with the model section's dropouts), or
    the model section's for the shards' grid, sub-tokens and classes."""
    m = shards.manifest
    if m.grid[0] != m.grid[1]:
        raise WetokError(f"the shards' token grid is {m.grid[0]}x{m.grid[1]}; the generator needs a square grid")
    from_shards = {"grid_size": m.grid[0], "groups": m.groups, "bits_per_group": m.bits_per_group}
    if initial is None:
        config = cfg.model.transformer_config(from_shards, len(m.classes))
    else:
        dropouts = {k: v for k, v in dataclasses.asdict(cfg.model).items()
                    if v is not None and (k.endswith("dropout") or k in ("drop_path", "init_std"))}
        config = dataclasses.replace(initial.config, **dropouts)
        differ = [k for k, v in from_shards.items() if getattr(config, k) != v]
        if differ:
            raise WetokError(f"init.checkpoint: the generator has {config.grid_size}x{config.grid_size} positions x {config.groups} "
                             f"sub-tokens of {config.bits_per_group} bits; the shards hold {m.grid[0]}x{m.grid[1]} x "
                             f"{m.groups} of {m.bits_per_group}")
    if config.num_classes < len(m.classes):
        raise WetokError(f"the shards have {len(m.classes)} classes; the generator {config.num_classes}")
    return config


def build_parts(cfg: ARTrainConfig, config: TransformerConfig, initial: Transformer | None, info: Distributed) -> Parts:
    """Model (random from train.seed, or the initial weights), placed and sharded, with AdamW,
    scaler and EMA at their starting point."""
    torch.manual_seed(cfg.train.seed)
    model = Transformer(config)
    if initial is not None:
        model.load_state_dict(initial.transformer_state_dict())
    model.to(info.device)
    ema = EMA(model, cfg.optim.ema_decay) if cfg.optim.ema_decay is not None else None
    if cfg.train.parallel == "fsdp" and info.enabled:
        from torch.distributed.fsdp import fully_shard

        for block in [*model.spatial_blocks, *model.factorized_blocks]:
            fully_shard(block)
        fully_shard(model)
    o = cfg.optim
    optimizer = torch.optim.AdamW(parameter_groups(model, o.weight_decay), lr=o.lr, betas=o.betas)
    scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.train.precision == "fp16")
    return Parts(model=model, optimizer=optimizer, scaler=scaler, ema=ema)


def _sharded(cfg: ARTrainConfig, info: Distributed) -> bool:
    return cfg.train.parallel == "fsdp" and info.enabled


def full_model_state(parts: Parts, cfg: ARTrainConfig, info: Distributed) -> dict[str, torch.Tensor]:
    """The whole generator's tensors on the CPU (gathered from the shards under FSDP: call on every
    rank; only rank 0's dict is complete)."""
    if _sharded(cfg, info):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(parts.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in parts.model.state_dict().items()}


def checkpoint_payload(cfg: ARTrainConfig, parts: Parts, info: Distributed) -> dict[str, Any]:
    """The state to save (gathers every rank's RNG state, and under FSDP the shards: call on all ranks)."""
    rng = rng_states(info)
    if _sharded(cfg, info):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        model_state, optim_state = get_state_dict(parts.model, parts.optimizer,
                                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        model_state, optim_state = parts.model.state_dict(), parts.optimizer.state_dict()
    return {
        "config": cfg.to_dict(),
        "transformer_config": parts.model.config.to_dict(),
        "model": model_state,
        "optimizer": optim_state,
        "scaler": parts.scaler.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "rng": rng,
    }


def restore(parts: Parts, state: dict[str, Any], cfg: ARTrainConfig, info: Distributed) -> None:
    """Load a checkpoint's model, optimizer, scaler and EMA into `parts` (the RNG is restored last,
    by `_seed_global_rng`)."""
    if _sharded(cfg, info):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(parts.model, parts.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"],
                       options=StateDictOptions(full_state_dict=True))
    else:
        parts.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
    parts.scaler.load_state_dict(state["scaler"])
    if parts.ema is not None:
        if state.get("ema") is None:
            raise WetokError("the checkpoint has no EMA weights: optim.ema_decay cannot be switched on when resuming")
        parts.ema.load_state_dict(state["ema"])


def _seed_global_rng(cfg: ARTrainConfig, info: Distributed, rng: list[dict[str, Any]] | None) -> None:
    """This rank's global RNG (dropout, label dropout) as the first step finds it: the checkpoint's
    state of this rank, or seed + 1000 x rank for a fresh run."""
    if rng is None or not restore_rng(rng, info):
        torch.manual_seed(cfg.train.seed + 1000 * info.rank)


# ---- the run ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Run:
    """One process's run: what `_prepare` sets up, then the counters the steps advance."""

    cfg: ARTrainConfig
    info: Distributed
    run_dir: Path
    parts: Parts
    wrapped: nn.Module  # parts.model, under DDP when distributed with ddp
    tokenizer: Tokenizer | None
    batches: TokenBatches
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    log: RunLog | None  # rank 0 only
    bar: Any
    say: Callable[..., None]
    start: int
    last_checkpoint: float = 0.0
    window_start: float = 0.0
    window_tokens: int = 0


def train_ar(cfg: ARTrainConfig, data: str | Path, run_dir: str | Path, *, resume: bool | str = False, progress: bool = True) -> int:
    """Train (or continue training) a generator on token shards; returns 0 when finished, 128 +
    the signal when stopped by SIGTERM/SIGINT (after writing a checkpoint).

    `resume`: False (a fresh run; a RUN_DIR with checkpoints is refused), True (continue from the
    latest checkpoint) or "auto" (the latest when there is one; what a torchrun restart means,
    `runs.job.run_job`).
    Raises `WetokError` for user errors (a tokenizer other than the shards', a bad checkpoint),
    `TrainingDiverged` for a NaN/inf loss, `PeerLost` when another process of the job stopped.
    """
    run_dir = Path(run_dir)

    def body(info: Distributed, mode: bool | str) -> int:
        run = _prepare(cfg, Path(data), run_dir, mode, info, progress)
        return _finish(run, run_steps(run.start, cfg.train.steps, lambda step, stop: _step(run, step, stop)))

    return run_job(cfg.train.device, cfg.train.timeout_minutes, resume, body)


def _prepare(cfg: ARTrainConfig, data: Path, run_dir: Path, resume: bool | str, info: Distributed, progress: bool) -> _Run:
    """Everything before the first step: shards, tokenizer, the starting point, wrappers, the run
    directory, logs, the progress bar, and last the global RNG."""
    t = cfg.train
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    say = print if info.main else (lambda *a, **k: None)
    shards = open_shards(data)
    resumed = resolve_resume(run_dir, resume, info, command=COMMAND, format=CHECKPOINT_FORMAT)
    initial = None
    if cfg.init.checkpoint is not None and resumed is None:
        initial = load_generator(cfg.init.checkpoint, cfg.init.config, trust_pickle=cfg.init.trust_pickle)
    tokenizer = resolve_tokenizer(cfg, shards, initial, info.device)
    config = TransformerConfig.from_dict(resumed["transformer_config"]) if resumed is not None else generator_config(cfg, shards, initial)
    parts = build_parts(cfg, config, initial, info)
    start = 0
    if resumed is not None:
        restore(parts, resumed, cfg, info)
        start = int(resumed["step"])
    wrapped: nn.Module = parts.model
    if info.enabled and cfg.train.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(parts.model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if info.main:
        write_run_config(run_dir, cfg.to_yaml())
    m = shards.manifest
    say(f"{COMMAND}: {config.describe()}; {config.parameter_count() / 1e6:.2f}M parameters")
    say(f"{COMMAND}: {shards.num_images} images x {shards.views} view(s) from {data}; {info.world} process(es) on {info.device} "
        f"({t.parallel}), batch {cfg.data.batch_size} x {cfg.optim.grad_accum} x {info.world}, {t.precision}")
    made_by = m.tokenizer.get("preset") or m.tokenizer.get("weights_file") or "an unnamed tokenizer"
    say(f"{COMMAND}: tokenizer " + (f"{made_by} (architecture {m.tokenizer['architecture']})" if tokenizer is not None else
                                    "not given (tokenizer.model): no sample grids, the export carries none"))
    if initial is not None:
        say(f"{COMMAND}: fine-tuning from {cfg.init.checkpoint}")
    if resumed is not None:
        say(f"{COMMAND}: resumed at step {start}")
    if start >= t.steps:
        say(f"{COMMAND}: the run is already at step {start} of {t.steps}; nothing to do (raise --steps to continue)")
    batches = TokenBatches(shards, cfg.data.batch_size, cfg.data.views, cfg.train.seed, info.rank, info.world)
    log = RunLog(run_dir, resumed_at=start if resumed is not None or resume == "auto" else None, command=COMMAND) if info.main else None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    run = _Run(cfg=cfg, info=info, run_dir=run_dir, parts=parts, wrapped=wrapped, tokenizer=tokenizer, batches=batches,
               autocast=lambda: torch.autocast(info.device.type, dtype=dtype, enabled=dtype is not None),
               log=log, bar=_progress_bar(cfg, start, info, progress), say=say, start=start,
               last_checkpoint=time.monotonic(), window_start=time.monotonic())
    _seed_global_rng(cfg, info, resumed["rng"] if resumed is not None else None)
    return run


def _progress_bar(cfg: ARTrainConfig, start: int, info: Distributed, progress: bool) -> Any:
    """Rank 0's tqdm bar over the steps (redrawn at most every 30 s into a log file)."""
    if not (info.main and progress):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.train.steps, initial=start, desc="train-ar", unit="step", dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)


# ---- one optimizer step -------------------------------------------------------------------------
def _step(run: _Run, step: int, stop: StopRequest) -> int:
    """Optimizer step `step` (0-based): lr, micro-batches forward and backward, clip, AdamW, EMA,
    the NaN/stop check, logs, sample grid, checkpoint. Returns 0 or 128 + the signal."""
    cfg, parts, info = run.cfg, run.parts, run.info
    o = cfg.optim
    factor = lr_factor(step, cfg.train.steps, o)
    for group in parts.optimizer.param_groups:
        group["lr"] = o.lr * factor
    parts.model.train()
    parts.optimizer.zero_grad(set_to_none=True)
    groups = parts.model.config.groups
    per_group = torch.zeros(groups)
    accuracy = torch.zeros(groups)
    for i in range(o.grad_accum):
        tokens, labels = run.batches.batch(step * o.grad_accum + i)
        tokens, labels = tokens.to(info.device, non_blocking=True), labels.to(info.device, non_blocking=True)
        with _gradient_sync(run, i == o.grad_accum - 1), run.autocast():
            losses = subtoken_losses(run.wrapped(tokens, labels), tokens)
        parts.scaler.scale(losses.total / o.grad_accum).backward()
        per_group += losses.per_group.detach().float().cpu() / o.grad_accum
        accuracy += losses.accuracy.float().cpu() / o.grad_accum
        run.window_tokens += tokens.shape[0] * tokens.shape[1] * info.world
    grad_norm = _optimizer_step(parts, o.grad_clip)
    parts.scaler.update()
    if parts.ema is not None:
        parts.ema.update(parts.model)

    done = step + 1
    total = float(per_group.sum())
    stopping = check_finite(done, {"loss": torch.tensor(total)}, stop, info)
    if step % cfg.train.log_every == 0 or done == cfg.train.steps:
        _log(run, done, factor, per_group, accuracy, grad_norm)
    if run.bar is not None:
        run.bar.update(1)
    s = cfg.sample
    if s.every and (done % s.every == 0 or done == cfg.train.steps):
        _sample_grid(run, done)
    _maybe_checkpoint(run, done, stopping)
    if stopping:
        run.say(f"\n{COMMAND}: stopped by signal {stop.signal or 'on another process'} after step {done}; continue with --resume")
        return 128 + (stop.signal or signal.SIGTERM)
    return 0


def _gradient_sync(run: _Run, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """Whether this micro-batch's backward averages the gradients over the processes: only the
    last of an optimizer step's does (DDP's `no_sync`; FSDP's `set_requires_gradient_sync`, which
    keeps the unsharded gradients until then)."""
    if isinstance(run.wrapped, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext() if sync else run.wrapped.no_sync()
    if _sharded(run.cfg, run.info):
        run.parts.model.set_requires_gradient_sync(sync)  # type: ignore[operator]
    return contextlib.nullcontext()


def _optimizer_step(parts: Parts, clip: float | None) -> float:
    """Unscale, clip (when set), step; returns the global gradient norm before clipping."""
    parts.scaler.unscale_(parts.optimizer)
    params = [p for p in parts.model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)
    if hasattr(norm, "full_tensor"):  # FSDP: a DTensor
        norm = norm.full_tensor()
    parts.scaler.step(parts.optimizer)
    return float(norm)


def _log(run: _Run, done: int, factor: float, per_group: torch.Tensor, accuracy: torch.Tensor, grad_norm: float) -> None:
    """Scalars averaged over the ranks: loss (total and per sub-token), accuracy per sub-token,
    gradient norm, lr and token positions per second since the last log."""
    values = {"loss": float(per_group.sum()), "grad_norm": grad_norm}
    for g in range(len(per_group)):
        values[f"loss/subtoken{g}"] = float(per_group[g])
        values[f"accuracy/subtoken{g}"] = float(accuracy[g])
    values = all_reduce_mean(values, run.info)
    elapsed = time.monotonic() - run.window_start
    values["tokens_per_s"] = run.window_tokens / max(elapsed, 1e-9)
    values["lr"] = run.cfg.optim.lr * factor
    run.window_start, run.window_tokens = time.monotonic(), 0
    if run.log is not None:
        run.log.scalars(done, {(k if "/" in k else f"train/{k}"): v for k, v in values.items()})
    if run.bar is not None:
        run.bar.set_postfix(loss=f"{values['loss']:.4f}", tok_s=f"{values['tokens_per_s']:.0f}")


def _sampling_model(run: _Run) -> Transformer | None:
    """The weights to sample and export, as a plain model on rank 0 (None elsewhere): the EMA when
    there is one, else the trained weights (gathered from the shards under FSDP: call on every rank)."""
    if run.parts.ema is not None:
        return run.parts.ema.model if run.info.main else None
    if not _sharded(run.cfg, run.info):
        return run.parts.model if run.info.main else None
    state = full_model_state(run.parts, run.cfg, run.info)
    if not run.info.main:
        return None
    return plain_generator(run.parts.model.config, state).to(run.info.device)


def _sample_grid(run: _Run, done: int) -> None:
    """Rank 0: `sample.per_class` samples of each of the first `sample.classes` classes, a row a
    class, into RUN_DIR/samples and TensorBoard (needs the tokenizer)."""
    if run.tokenizer is None:
        return
    model = _sampling_model(run)
    if model is None or run.log is None:
        return
    from ...evaluation.grid import class_rows
    from ..run import decode_images
    from ..sampling import generate

    s = run.cfg.sample
    classes = list(range(min(s.classes, model.config.num_classes)))
    labels = [c for c in classes for _ in range(s.per_class)]
    seeds = [s.seed + i for i in range(len(labels))]
    was_training = model.training
    model.eval()
    tokens = generate(model, labels, cfg_scale=s.cfg_scale, seeds=seeds)
    model.train(was_training)
    images = decode_images(run.tokenizer, tokens, seeds, "round")
    names = run.batches.shards.manifest.classes
    grid = class_rows(images.reshape(len(classes), s.per_class, *images.shape[1:]), [names[c] or str(c) for c in classes])
    run.log.image(done, "samples", np.asarray(grid))


def _maybe_checkpoint(run: _Run, done: int, stopping: bool) -> None:
    """A checkpoint after step `done` every `ckpt_every` steps, at the end, on a stop request, or
    when `ckpt_minutes` passed on any rank (all ranks agree)."""
    t = run.cfg.train
    by_time = False
    if t.ckpt_minutes is not None:
        late = time.monotonic() - run.last_checkpoint >= 60 * t.ckpt_minutes
        by_time = bool(all_reduce_max([1.0 if late else 0.0], run.info)[0])
    if done % t.ckpt_every == 0 or done == t.steps or stopping or by_time:
        payload = checkpoint_payload(run.cfg, run.parts, run.info)
        if run.info.main:
            path = save_checkpoint(run.run_dir, done, payload, t.keep_checkpoints, format=CHECKPOINT_FORMAT)
            run.say(f"{COMMAND}: checkpoint {path}")
        run.last_checkpoint = time.monotonic()


def _finish(run: _Run, status: int) -> int:
    """Close the bar; a finished run exports RUN_DIR/model (rank 0); close the logs."""
    if run.bar is not None:
        run.bar.close()
    if status == 0:
        model = _sampling_model(run)
        if model is not None:
            path = export_model(model, run.tokenizer, run.run_dir / EXPORT_DIR)
            weights = "EMA weights" if run.parts.ema is not None else "weights"
            run.say(f"{COMMAND}: finished {run.cfg.train.steps} steps; {weights} exported to {path} (wetok.ar.load and "
                    f"wetok sample --ckpt read it)")
    if run.log is not None:
        run.log.close()
    return status


def plain_generator(config: TransformerConfig, state: dict[str, torch.Tensor]) -> Transformer:
    """A plain (unwrapped, unsharded) generator holding `state`, built without drawing from the
    global RNG: a sample grid or an export in the middle of a run must not move the dropout
    draws of the steps after it."""
    with torch.random.fork_rng(devices=[]):
        model = Transformer(config)
    model.load_state_dict(state)
    return model


def export_model(model: Transformer, tokenizer: Tokenizer | None, directory: Path) -> Path:
    """Write `model` (with `tokenizer` included, when given) as a generator directory."""
    plain = plain_generator(model.config, model.transformer_state_dict())
    plain.attach_tokenizer(tokenizer)
    return save_generator(plain.eval(), directory)


def export_latest(run_dir: str | Path, destination: str | Path | None = None, *, tokenizer: Tokenizer | None = None) -> Path:
    """Write the latest checkpoint's weights (the EMA when the run keeps one) as a generator
    directory (default RUN_DIR/model); `tokenizer` is included when given."""
    run_dir = Path(run_dir)
    found = latest_checkpoint(run_dir, format=CHECKPOINT_FORMAT)
    if found is None:
        raise WetokError(f"{run_dir}: no generator training checkpoint to export")
    _, state = found
    model = plain_generator(TransformerConfig.from_dict(state["transformer_config"]),
                            state["ema"]["model"] if state.get("ema") is not None else state["model"])
    return export_model(model, tokenizer, Path(destination) if destination is not None else run_dir / EXPORT_DIR)
