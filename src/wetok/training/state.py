"""Training checkpoints: one file per step under RUN_DIR/checkpoints, written atomically.

A checkpoint is a `torch.save`d dict of tensors and plain values only (it loads with
`weights_only=True`): format, step, the training config, the tokenizer config, model, EMA,
discriminator, LeCAM averages, both optimizers, the gradient scaler and every rank's RNG state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, WetokError, first_line
from ..files import atomic_write
from ..weights import read_torch_file

TRAIN_FORMAT = "wetok-train"
TRAIN_FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8,})\.pt$")


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


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """Write `payload` as the checkpoint of `step` (temporary file, flushed to disk, then renamed),
    then delete all but the newest `keep` checkpoints. A write that fails (ENOSPC, EFBIG from
    `ulimit -f`, torch's zip writer giving up) is `CheckpointWriteError`, before anything is pruned."""
    path = checkpoint_path(run_dir, step)
    payload = {"format": TRAIN_FORMAT, "version": TRAIN_FORMAT_VERSION, "step": step, **payload}
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


def is_training_checkpoint(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint (safe loading); `CheckpointError` when it is not one."""
    obj = read_torch_file(path)
    if not is_training_checkpoint(obj):
        raise CheckpointError(f"{path}: not a wetok training checkpoint")
    if int(obj.get("version", 0)) > TRAIN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer wetok (training format {obj['version']})")
    return obj


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads (a damaged newest one is reported and skipped), or None."""
    errors = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, read_checkpoint(path)
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
