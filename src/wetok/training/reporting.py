"""What a run reports: TensorBoard scalars, reconstruction grids (TensorBoard + PNG), held-out PSNR."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import WetokError
from ..files import atomic_write
from ..images import to_uint8
from ..tokenizer import Tokenizer

METRICS_FILE = "metrics.jsonl"  # one JSON line of training scalars per logged step
EVAL_FILE = "eval.jsonl"  # one JSON line of held-out PSNR / SSIM per evaluation


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


def _append_line(path: Path, row: dict) -> None:
    def append() -> None:
        with path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    _writing(path, append)


class Reporter:
    """Rank 0's writer of RUN_DIR/logs (TensorBoard), RUN_DIR/metrics.jsonl, RUN_DIR/eval.jsonl and
    RUN_DIR/samples/*.png. Without the `tensorboard` package the scalars are skipped (with a note)
    and the rest still written.

    `resumed_at`: the step of the checkpoint a resumed run starts from (0: a torchrun restart
    that starts over; None: a fresh run). What an interrupted run logged after that step is
    dropped (the JSON lines rewritten atomically, TensorBoard events purged), because the resumed
    run logs those steps again: each step is in the logs once.
    """

    def __init__(self, run_dir: Path, resumed_at: int | None = None) -> None:
        self.run_dir = run_dir
        if resumed_at is not None:
            for name in (METRICS_FILE, EVAL_FILE):
                _writing(run_dir / name, functools.partial(_drop_after, run_dir / name, resumed_at))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("wetok train: the tensorboard package is missing: no TensorBoard logs (pip install tensorboard)")
            self.writer = None
        else:
            self.writer = SummaryWriter(str(run_dir / "logs"), purge_step=resumed_at + 1 if resumed_at is not None else None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """TensorBoard scalars, and one JSON line in RUN_DIR/metrics.jsonl (easy to read from a shell)."""
        _append_line(self.run_dir / METRICS_FILE, {"step": step, **values})
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def grid(self, step: int, images: torch.Tensor, reconstructions: torch.Tensor, limit: int = 8) -> Path:
        """Originals (top row) over reconstructions (bottom row): PNG in RUN_DIR/samples and TensorBoard."""
        from PIL import Image

        top = to_uint8(images[:limit])
        bottom = to_uint8(reconstructions[:limit])
        grid = np.concatenate([np.concatenate(list(top), axis=1), np.concatenate(list(bottom), axis=1)], axis=0)
        path = self.run_dir / "samples" / f"step-{step:08d}.png"
        _writing(path, lambda: (path.parent.mkdir(parents=True, exist_ok=True), Image.fromarray(grid).save(path)))
        if self.writer is not None:
            self.writer.add_image("reconstructions", grid, step, dataformats="HWC")
        return path

    def evaluation(self, step: int, values: dict[str, float]) -> None:
        """One JSON line of held-out figures in RUN_DIR/eval.jsonl, and TensorBoard scalars eval/*."""
        _append_line(self.run_dir / EVAL_FILE, {"step": step, **values})
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"eval/{name}", value, step)

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


@torch.no_grad()
def heldout_metrics(model: Tokenizer, images: torch.Tensor, batch_size: int = 8) -> tuple[dict[str, float], torch.Tensor]:
    """Mean PSNR (dB) and SSIM of `model`'s reconstructions of `images` (N, 3, S, S) in [-1, 1],
    both on 8-bit pixels (`wetok.metrics`, scikit-image's numbers), and the reconstructions of the
    first batch (for a grid). A generative decoder follows wetok's seeding rule with seed 0: image
    i gets noise from seed i (`wetok.tokenizer.seeded_noise`), so the figures are repeatable and
    do not depend on `batch_size`."""
    from ..metrics import psnr, ssim

    psnrs, ssims, first = [], [], None
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        recon = model.reconstruct(batch.to(model.device), seed=start).cpu()
        first = recon if first is None else first
        reference, test = to_uint8(batch), to_uint8(recon)
        psnrs += psnr(reference, test).clamp(max=100.0).tolist()
        ssims += ssim(reference, test).tolist()
    if first is None:
        raise WetokError("no held-out images to evaluate")
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}, first
