"""Training checkpoints: one file per step under RUN_DIR/checkpoints, written atomically, and
the choice of the checkpoint a run continues from.

A checkpoint is a `torch.save`d dict of tensors and plain values only (it loads with
`weights_only=True`): `format` (which trainer wrote it), `version`, `step`, and what the trainer
puts in its payload (for both trainers: the training config, the weights, the optimizer state
and every rank's RNG state, `rng_states`). The formats:

    "wetok-train"     the tokenizer's (`wetok train`, `wetok.training`), the default
    "wetok-ar-train"  the generator's (`wetok train-ar`, `wetok.ar.training`)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

import torch

from ..distributed import Distributed, gather_objects
from ..errors import CheckpointError, WetokError, first_line
from ..files import atomic_write
from ..weights import read_torch_file

TRAIN_FORMAT = "wetok-train"
AR_TRAIN_FORMAT = "wetok-ar-train"
FORMATS = {TRAIN_FORMAT: ("wetok training checkpoint", 1), AR_TRAIN_FORMAT: ("wetok generator training checkpoint", 1)}
"""format name -> (what a message calls it, the newest version this wetok reads and writes)."""
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


def _known(format: str) -> tuple[str, int]:
    """(description, version) of a checkpoint format; another name is a programming error."""
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r} (known: {', '.join(FORMATS)})")
    return FORMATS[format]


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """RUN_DIR/checkpoints/step-00001000.pt for the state after `step` optimizer steps."""
    return checkpoint_dir(run_dir) / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every training checkpoint in the run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


class CheckpointWriteError(WetokError):
    """A checkpoint could not be written (a full disk, a file-size limit, ...): the message names
    the file and the cause; the temporary file is gone and the older checkpoints are kept."""


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int, *, format: str = TRAIN_FORMAT) -> Path:
    """Write `payload` as the checkpoint of `step` (temporary file, flushed to disk, then renamed),
    then delete all but the newest `keep` checkpoints. A write that fails (ENOSPC, EFBIG from
    `ulimit -f`, torch's zip writer giving up) is `CheckpointWriteError`, before anything is pruned."""
    _, version = _known(format)
    path = checkpoint_path(run_dir, step)
    payload = {"format": format, "version": version, "step": step, **payload}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(".step-*.tmp"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        atomic_write(path, lambda tmp: _write_torch_file(payload, tmp))
    except (OSError, RuntimeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise CheckpointWriteError(f"{path}: cannot write checkpoint: {cause}") from None
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


class _RecordingWriter:
    """A binary file for `torch.save` that keeps the first `OSError` of a write: torch's zip
    writer reports a failed write only as "[enforce fail at inline_container.cc] ...", without
    the cause (No space left on device, File too large)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _write_torch_file(payload: dict[str, Any], path: Path) -> None:
    """`torch.save(payload)` into `path`, flushed and fsync'ed; a failed write raises its `OSError`."""
    with path.open("wb") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        handle.flush()
        os.fsync(handle.fileno())


def is_training_checkpoint(obj: object, format: str = TRAIN_FORMAT) -> bool:
    """Whether `obj` (a loaded file) is a training checkpoint of `format`."""
    _known(format)
    return isinstance(obj, dict) and obj.get("format") == format


def read_checkpoint(path: Path, *, format: str = TRAIN_FORMAT) -> dict[str, Any]:
    """Load a training checkpoint of `format` (safe loading); `CheckpointError` when it is not one
    (a checkpoint of the other trainer is named as such) or a newer wetok wrote it."""
    what, version = _known(format)
    obj = read_torch_file(path)
    if not is_training_checkpoint(obj, format):
        other = obj.get("format") if isinstance(obj, dict) else None
        if isinstance(other, str) and other in FORMATS:
            raise CheckpointError(f"{path}: a {FORMATS[other][0]} ({other}), not a {what}")
        raise CheckpointError(f"{path}: not a {what}")
    if int(obj.get("version", 0)) > version:
        raise CheckpointError(f"{path}: written by a newer wetok (training format {obj['version']})")
    return obj


def latest_checkpoint(run_dir: Path, *, format: str = TRAIN_FORMAT) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads (a damaged newest one is reported and skipped), or None."""
    errors = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, read_checkpoint(path, format=format)
        except CheckpointError as exc:
            errors.append(str(exc))
    if errors:
        raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}: {errors[0]}")
    return None


def set_aside_newer(run_dir: Path, step: int) -> list[Path]:
    """Rename checkpoints newer than `step` (unreadable ones a resume skipped) to `*.pt.unreadable`,
    so that they neither shadow nor prune the checkpoints the resumed run writes. Returns the new names."""
    moved = []
    for later, path in list_checkpoints(run_dir):
        if later > step:
            target = path.with_name(path.name + ".unreadable")
            path.rename(target)
            moved.append(target)
    return moved


def resolve_resume(
    run_dir: Path, resume: bool | str, info: Distributed, *, command: str, format: str = TRAIN_FORMAT
) -> dict[str, Any] | None:
    """The checkpoint a run continues from (None for a fresh run); a fresh run refuses a RUN_DIR
    that holds checkpoints. `resume`: False (fresh), True (the latest checkpoint, which must
    exist), "auto" (a torchrun restart: the latest checkpoint when there is one, else fresh).
    Rank 0 sets aside the unreadable checkpoints newer than the one chosen (`set_aside_newer`)
    and says so, its lines starting with `command` ("wetok train", "wetok train-ar")."""
    if resume == "auto":
        found = latest_checkpoint(run_dir, format=format)
        if found is None:
            return None
    elif not resume:
        if list_checkpoints(run_dir):
            raise WetokError(f"{run_dir} already holds a run's checkpoints: pass --resume to continue it, or choose another --output")
        return None
    else:
        found = latest_checkpoint(run_dir, format=format)
        if found is None:
            raise WetokError(f"--resume: no checkpoint in {checkpoint_dir(run_dir)}")
    if info.main:
        for path in set_aside_newer(run_dir, int(found[1]["step"])):
            print(f"{command}: unreadable checkpoint set aside as {path}")
    return found[1]


def rng_states(info: Distributed) -> list[dict[str, torch.Tensor]]:
    """Every rank's global RNG state (CPU, and CUDA on a GPU), in rank order, for a checkpoint's
    "rng" entry; gathers from all ranks: call on all of them."""
    rng = {"cpu": torch.get_rng_state()}
    if info.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(info.device)
    return cast(list[dict[str, torch.Tensor]], gather_objects(rng, info))


def restore_rng(states: list[dict[str, torch.Tensor]], info: Distributed) -> bool:
    """Set this rank's global RNG to its entry of `states` (`rng_states` of the checkpoint);
    returns False, changing nothing, when the checkpoint was written by another number of processes."""
    if len(states) != info.world:
        return False
    rng = states[info.rank]
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and info.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], info.device)
    return True
