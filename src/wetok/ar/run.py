"""Sampling runs: many images, in batches, under torchrun, resumable, into PNG files or an ADM `.npz`.

Image i of a run has label classes[i // per_class] and seed seed + i; its tokens depend on those
alone (`generate(seeds=...)`), and so does its decoding (a generative decoder's noise also comes
from seed + i). Which batch, process or attempt makes an image therefore changes nothing: a run
split over any number of processes, or stopped and resumed, gives the same images as one
uninterrupted run.

Outputs:
- a folder: `CLASS/INDEX.png` for every image (CLASS zero-padded), `sampling.json` (the
  settings), `grid.png` (a preview); an image is done once its file exists (files are written
  atomically);
- `FILE.npz` (ADM layout: `arr_0` images, `arr_1` labels), with `FILE.json` (the settings) and
  `FILE.png` (a preview) beside it. Until the run is complete, finished batches are kept in
  `FILE.npz.partial/`; the `.npz` is assembled from them at the end and the folder removed.

Resuming: run the same command again. The settings must be those recorded (`sampling.json` or
`FILE.npz.partial/sampling.json`); the batch size, device and process count may differ.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..distributed import Distributed, decided_by_main, gather_objects
from ..errors import WetokError
from ..files import atomic_write, check_json_record, write_json_record
from ..images import Uint8Mode, to_uint8_tensor
from ..tokenizer import Tokenizer, seeded_noise
from .model import Transformer
from .npz import ADM_KEYS, write_npz
from .sampling import SamplingSettings, generate

RECORD_FORMAT = "wetok-samples"
RECORD_VERSION = 1
RECORD_NAME = "sampling.json"
PREVIEW_CLASSES = 10
PREVIEW_PER_CLASS = 8


@dataclass(frozen=True)
class SamplePlan:
    """What a run samples: per_class images for each of `classes`, image i with label
    classes[i // per_class] and seed seed + i."""

    classes: tuple[int, ...]
    per_class: int
    settings: SamplingSettings
    seed: int = 0
    uint8: Uint8Mode = "round"

    @property
    def total(self) -> int:
        return len(self.classes) * self.per_class

    def labels(self, indices: Sequence[int]) -> list[int]:
        return [self.classes[i // self.per_class] for i in indices]

    def record(self, model: dict[str, Any]) -> dict[str, Any]:
        """The settings written beside the output, and compared when a run resumes."""
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "model": model, "classes": list(self.classes),
                "per_class": self.per_class, "images": self.total, "seed": self.seed, "uint8": self.uint8,
                "sampling": self.settings.to_dict(), "seeds": "image i: seed + i"}


def parse_classes(text: str, num_classes: int) -> tuple[int, ...]:
    """`all`, or a comma list of labels and ranges (`0,5,10-19`), each in [0, num_classes)."""
    if text.strip() == "all":
        return tuple(range(num_classes))
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            low, _, high = part.partition("-")
            first, last = int(low), int(high) if high else int(low)
        except ValueError:
            raise WetokError(f"--classes: {part!r} is not a label or a range LOW-HIGH (or use 'all')") from None
        if not 0 <= first <= last < num_classes:
            raise WetokError(f"--classes: {part!r} is outside the model's labels 0..{num_classes - 1}")
        out.extend(range(first, last + 1))
    if len(set(out)) != len(out):
        raise WetokError("--classes: a label is listed twice")
    return tuple(out)


# ---- outputs ---------------------------------------------------------------------------------------
class PngFolder:
    """A folder of `CLASS/INDEX.png` files."""

    def __init__(self, root: Path, plan: SamplePlan) -> None:
        self.root, self.plan = root, plan
        self.width = max(4, len(str(max(plan.classes))))
        self.record_path = root / RECORD_NAME

    def path(self, index: int) -> Path:
        label = self.plan.classes[index // self.plan.per_class]
        return self.root / f"{label:0{self.width}d}" / f"{index:06d}.png"

    def prepare(self, record: dict[str, Any]) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise WetokError(f"{self.root}: exists and is not a folder")
        if self.record_path.exists():
            check_record(self.record_path, record)
        elif self.root.exists() and any(self.root.iterdir()):
            raise WetokError(f"{self.root}: a folder that holds other files; give an empty or new folder (or FILE.npz)")
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_record(self.record_path, record)

    def done(self) -> set[int]:
        return {i for i in range(self.plan.total) if self.path(i).is_file()}

    def write(self, indices: Sequence[int], images: np.ndarray) -> None:
        from PIL import Image

        for index, image in zip(indices, images):
            path = self.path(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda p, im=image: Image.fromarray(im).save(p, format="PNG"))

    def finish(self) -> Path:
        missing = self.plan.total - len(self.done())
        if missing:
            raise WetokError(f"{self.root}: {missing} images are missing after the run (a process stopped?); run again to finish")
        preview = [[np.asarray(_read_png(self.path(i))) for i in ids] for ids in preview_indices(self.plan)]
        _write_preview(self.root / "grid.png", preview, self.plan)
        return self.root


class NpzFile:
    """`FILE.npz` (ADM's key names, or `keys`), built from batches kept in `FILE.npz.partial/`."""

    def __init__(self, path: Path, plan: SamplePlan, keys: tuple[str, str] = ADM_KEYS) -> None:
        self.path, self.plan, self.keys = path, plan, keys
        self.parts = path.with_name(path.name + ".partial")
        self.record_path = path.with_suffix(".json")

    def prepare(self, record: dict[str, Any]) -> bool:
        """False when the file is already complete with these settings (nothing to do)."""
        if self.path.exists() and not self.parts.exists():
            if self.record_path.is_file():
                check_record(self.record_path, record)
                return False
            raise WetokError(f"{self.path}: exists and was not written by wetok sample; remove it or choose another --output")
        if self.parts.exists():
            check_record(self.parts / RECORD_NAME, record)
        self.parts.mkdir(parents=True, exist_ok=True)
        write_json_record(self.parts / RECORD_NAME, record)
        return True

    def _chunks(self) -> list[tuple[int, int, Path]]:
        found = []
        for part in self.parts.glob("*.npz"):
            try:
                start, stop = (int(x) for x in part.stem.split("-"))
            except ValueError:
                continue
            found.append((start, stop, part))
        return sorted(found)

    def done(self) -> set[int]:
        return {i for start, stop, _ in self._chunks() for i in range(start, stop)}

    def write(self, indices: Sequence[int], images: np.ndarray) -> None:
        """Keep one batch of consecutive indices as `START-STOP.npz`."""
        start, stop = indices[0], indices[-1] + 1
        if list(indices) != list(range(start, stop)):
            raise RuntimeError("a batch of an .npz run holds consecutive images")

        def save(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.savez(fh, images=images)

        atomic_write(self.parts / f"{start:08d}-{stop:08d}.npz", save)

    def _read(self, path: Path, count: int) -> np.ndarray:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != count:
            raise WetokError(f"{path}: not a batch of {count} images; remove it and run again")
        return images

    def finish(self) -> Path:
        chunks = self._chunks()
        covered = [i for start, stop, _ in chunks for i in range(start, stop)]
        if covered != list(range(self.plan.total)):
            missing = self.plan.total - len(set(covered))
            raise WetokError(f"{self.parts}: {missing} images are missing or repeated after the run; run again to finish")
        first = self._read(chunks[0][2], chunks[0][1] - chunks[0][0])
        shape = (self.plan.total, *first.shape[1:])
        labels = np.asarray(self.plan.labels(range(self.plan.total)), dtype=np.int64)
        wanted = {i for ids in preview_indices(self.plan) for i in ids}
        found: dict[int, np.ndarray] = {}

        def batches():  # every batch read once: streamed into the archive, the preview's images kept on the way
            for start, stop, part in chunks:
                images = self._read(part, stop - start)
                found.update({i: images[i - start] for i in wanted if start <= i < stop})
                yield images

        write_npz(self.path, shape, batches(), labels, self.keys)
        _write_preview(self.path.with_suffix(".png"), [[found[i] for i in ids] for ids in preview_indices(self.plan)], self.plan)
        record = json.loads((self.parts / RECORD_NAME).read_text())
        write_json_record(self.record_path, record)
        shutil.rmtree(self.parts)
        return self.path


def check_record(path: Path, record: dict[str, Any]) -> None:
    """The recorded settings of an earlier run must be `record`'s (one line naming what differs)."""
    check_json_record(path, record, what="wetok sample")


def preview_indices(plan: SamplePlan) -> list[list[int]]:
    """The preview's images: up to 8 of each of the first 10 classes, one list per class (a row of the grid)."""
    per = min(plan.per_class, PREVIEW_PER_CLASS)
    return [[c * plan.per_class + j for j in range(per)] for c in range(min(len(plan.classes), PREVIEW_CLASSES))]


def _write_preview(path: Path, rows: list[list[np.ndarray]], plan: SamplePlan) -> None:
    from ..evaluation.grid import class_rows

    names = [str(c) for c in plan.classes[: len(rows)]]
    grid = class_rows(np.stack([np.stack(row) for row in rows]), names, cell=max(64, min(256, rows[0][0].shape[0])))
    atomic_write(path, lambda p: grid.save(p, format="PNG"))


def _read_png(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


# ---- the run -------------------------------------------------------------------------------------
def decode_images(tokenizer: Tokenizer, tokens: torch.Tensor, seeds: Sequence[int], uint8: Uint8Mode) -> np.ndarray:
    """Tokens (B, h, w, G) -> uint8 images (B, H, W, 3); a generative decoder's noise for image i
    from seeds[i] (`seeded_noise`). One image at a time: a convolution's rounding depends on the
    batch, and a pixel near a rounding boundary of the uint8 conversion would follow it."""
    noise = None
    if tokenizer.config.generative:
        noise = seeded_noise((tokenizer.config.latent_channels, tokens.shape[1], tokens.shape[2]), seeds)
    images = [tokenizer.decode(tokens[i:i + 1], noise=None if noise is None else noise[i:i + 1]) for i in range(tokens.shape[0])]
    return to_uint8_tensor(torch.cat(images).float(), uint8).cpu().numpy()


def run(model: Transformer, plan: SamplePlan, output: Path, *, batch_size: int, model_record: dict[str, Any],
        info: Distributed, progress: bool = True, npz_keys: tuple[str, str] = ADM_KEYS) -> Path:
    """Sample `plan` into `output` (a folder, or a `.npz` file holding `npz_keys`); this process
    takes its share of the images not yet done. Returns the output path once every image is there."""
    if model.tokenizer is None:
        raise WetokError("the generator has no paired tokenizer: its checkpoint carries none; give one with --tokenizer")
    target: PngFolder | NpzFile = NpzFile(output, plan, npz_keys) if output.suffix.lower() == ".npz" else PngFolder(output, plan)
    def decide() -> tuple[list[int], bool]:
        todo = target.prepare(plan.record(model_record)) is not False
        return (sorted(set(range(plan.total)) - target.done()) if todo else [], todo)

    pending, todo = decided_by_main(decide, info)  # every process works from rank 0's list
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    batches = _consecutive(batches) if isinstance(target, NpzFile) else batches
    mine = batches[info.rank::info.world]
    _sample_batches(model, plan, target, mine, progress and info.main)
    gather_objects(len(mine), info)  # wait for every process before the end
    return target.finish() if info.main and todo else output


def _consecutive(batches: list[list[int]]) -> list[list[int]]:
    """Split batches at gaps in their indices (an .npz run keeps batches of consecutive images)."""
    out = []
    for batch in batches:
        start = 0
        for k in range(1, len(batch) + 1):
            if k == len(batch) or batch[k] != batch[k - 1] + 1:
                out.append(batch[start:k])
                start = k
    return out


def _sample_batches(model: Transformer, plan: SamplePlan, target: PngFolder | NpzFile, batches: list[list[int]], progress: bool) -> None:
    from tqdm.auto import tqdm

    device = model.head[0].weight.device
    s = plan.settings
    with tqdm(total=sum(map(len, batches)), desc="sample", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for indices in batches:
            seeds = [plan.seed + i for i in indices]
            labels = torch.tensor(plan.labels(indices), dtype=torch.long, device=device)
            tokens = generate(model, labels, cfg_scale=s.cfg_scale, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                              seeds=seeds)
            target.write(indices, decode_images(model.tokenizer, tokens, seeds, plan.uint8))
            bar.update(len(indices))
