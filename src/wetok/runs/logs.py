"""What a run writes besides its checkpoints, on rank 0: RUN_DIR/config.yaml (its settings),
RUN_DIR/metrics.jsonl and RUN_DIR/eval.jsonl (one JSON line per logged step, easy to read from
a shell), TensorBoard scalars and images in RUN_DIR/logs, and image grids as
RUN_DIR/samples/step-XXXXXXXX.png.

Every write that fails (a full disk, `ulimit -f`, a RUN_DIR/logs that cannot be a folder) is one
`WetokError` naming the file or folder and the cause.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WetokError, first_line
from ..files import atomic_write
from ..images import save_image, to_tensor

CONFIG_FILE = "config.yaml"  # the run's settings, what a resume reads back
METRICS_FILE = "metrics.jsonl"  # one JSON line of training scalars per logged step
EVAL_FILE = "eval.jsonl"  # one JSON line of held-out figures per evaluation
LOGS_DIR = "logs"  # TensorBoard event files
SAMPLES_DIR = "samples"  # image grids, one PNG per step


def _drop_after(path: Path, step: int) -> None:
    """Rewrite the JSON-lines file `path` (atomically) without its lines of steps after `step`,
    and without a line cut short by a killed process. A missing file is left missing."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line + "\n")
    atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))


def _writing(path: Path, write: Callable[[], object]) -> None:
    """`write()`, a failure (a full disk, `ulimit -f`) one `WetokError` naming `path` and the cause."""
    try:
        write()
    except OSError as exc:
        raise WetokError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _append_line(path: Path, row: dict[str, Any]) -> None:
    def append() -> None:
        with path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    _writing(path, append)


def _is_tensorboard_failure(exc: Exception) -> bool:
    """An error of the TensorBoard writer's files: an `OSError`, or an error of tensorboard's own
    file layer (its `errors.OpError`s); anything else is a programming error and propagates."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith("tensorboard.")


def _quiet_writer_threads() -> None:
    """TensorBoard writes its events in a thread of its own; a write that fails there ends that
    thread with a traceback on stderr, and the writer's next call raises the same error, which
    `RunLog` reports as one line. Leave out that thread's traceback: `threading.excepthook` is
    wrapped (once; again if something replaced it since) so that it skips the writer thread's
    file errors and hands every other thread's error to the hook it found."""
    try:
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread
    except ImportError:
        return
    previous = threading.excepthook
    if getattr(previous, "_wetok_quiet_writer", False):
        return

    def hook(args: Any) -> None:
        if not (isinstance(args.thread, _AsyncWriterThread) and isinstance(args.exc_value, Exception)
                and _is_tensorboard_failure(args.exc_value)):
            previous(args)

    hook._wetok_quiet_writer = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def write_run_config(run_dir: Path, config_yaml: str) -> Path:
    """Create RUN_DIR (and its parents) and write the run's settings as RUN_DIR/config.yaml,
    atomically; returns the file. Rank 0 calls it once before the first step; a folder that
    cannot be made or a file that cannot be written is one `WetokError` naming it and the cause."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WetokError(f"{run_dir}: cannot create the run directory ({exc.strerror or exc})") from None
    path = run_dir / CONFIG_FILE
    try:
        atomic_write(path, lambda tmp: tmp.write_text(config_yaml))
    except OSError as exc:
        raise WetokError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


class RunLog:
    """Rank 0's writer of a run's logs: RUN_DIR/metrics.jsonl, RUN_DIR/eval.jsonl, TensorBoard in
    RUN_DIR/logs, image grids in RUN_DIR/samples. Without the `tensorboard` package TensorBoard is
    skipped (with a note) and the rest still written.

    `resumed_at`: the step of the checkpoint a resumed run starts from (0: a torchrun restart
    that starts over; None: a fresh run). What an interrupted run logged after that step is
    dropped (the JSON lines rewritten atomically, TensorBoard events purged), because the resumed
    run logs those steps again: each step is in the logs once. `command` ("wetok train") starts
    the lines it prints.
    """

    def __init__(self, run_dir: Path, resumed_at: int | None, *, command: str) -> None:
        self.run_dir = run_dir
        if resumed_at is not None:
            for name in (METRICS_FILE, EVAL_FILE):
                _writing(run_dir / name, functools.partial(_drop_after, run_dir / name, resumed_at))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(f"{command}: the tensorboard package is missing: no TensorBoard logs (pip install tensorboard)")
            self.writer = None
        else:
            _quiet_writer_threads()
            purge = resumed_at + 1 if resumed_at is not None else None
            self.writer = self._tensorboard(lambda: SummaryWriter(str(run_dir / LOGS_DIR), purge_step=purge))

    def _tensorboard(self, call: Callable[[], Any]) -> Any:
        """`call()` (of the TensorBoard writer), a failure one `WetokError` naming RUN_DIR/logs."""
        try:
            return call()
        except Exception as exc:
            if not _is_tensorboard_failure(exc):
                raise
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            raise WetokError(f"{self.run_dir / LOGS_DIR}: cannot write the TensorBoard logs: {cause}") from None

    def _add_scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        writer = self.writer
        if writer is None:
            return

        def add() -> None:
            for name, value in values.items():
                writer.add_scalar(prefix + name, value, step)

        self._tensorboard(add)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One JSON line {"step": step, **values} in RUN_DIR/metrics.jsonl, and TensorBoard scalars."""
        _append_line(self.run_dir / METRICS_FILE, {"step": step, **values})
        self._add_scalars(step, values)

    def evaluation(self, step: int, values: Mapping[str, float]) -> None:
        """One JSON line of held-out figures in RUN_DIR/eval.jsonl, and TensorBoard scalars eval/NAME."""
        _append_line(self.run_dir / EVAL_FILE, {"step": step, **values})
        self._add_scalars(step, values, prefix="eval/")

    def image(self, step: int, tag: str, grid: np.ndarray) -> Path:
        """An image grid, uint8 (H, W, 3) (HWC, 0..255), as RUN_DIR/samples/step-XXXXXXXX.png (written
        atomically; a second grid of the same step replaces the first) and as TensorBoard image `tag`.
        Returns the PNG's path."""
        if not (isinstance(grid, np.ndarray) and grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3):
            raise ValueError(f"an image grid is uint8 (H, W, 3), got {getattr(grid, 'dtype', type(grid).__name__)} "
                             f"{getattr(grid, 'shape', '')}")
        path = self.run_dir / SAMPLES_DIR / f"step-{step:08d}.png"
        _writing(path, lambda: (path.parent.mkdir(parents=True, exist_ok=True), save_image(path, to_tensor(grid))))
        if self.writer is not None:
            writer = self.writer
            self._tensorboard(lambda: writer.add_image(tag, grid, step, dataformats="HWC"))
        return path

    def close(self) -> None:
        """Flush and close the TensorBoard writer (a failed flush is one `WetokError`)."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            self._tensorboard(writer.close)
