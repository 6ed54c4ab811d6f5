"""Tokenizing a dataset into token shards (`wetok tokenize`), once, for generator training.

Preprocessing is LlamaGen's `extract_codes_c2i.py`: the ADM centre crop (`adm_center_crop`) to
`size`, then the augmented views of each image (`augmented_views`): "none" the crop alone,
"flip" the crop and its mirror image, "tencrop" the ADM crop to int(size * crop_range) and
torchvision's TenCrop(size) of it (top-left, top-right, bottom-left, bottom-right, centre, then
the same five of the mirrored image). The tokenizer encodes every view in eval mode, float32,
without gradients, `batch_size` images (their views together) per forward pass.

Exactly once, under torchrun too: the sorted image list (`wetok.sources.labelled_images`, listed
by process 0 and sent to the others) is cut into shards of `shard_size` images, and every shard
is encoded by one process (a fresh run: shard k by rank k % world) and written atomically
(`ar.shards`). A rerun skips the shards that exist (resuming after a kill), with any number of
processes, once `tokenize.json` (written first) shows the same settings: the tokenizer (its
architecture, weights file and a fingerprint of its weights), size, augmentation, shard size and
the file list. Other settings are refused with one line. Process 0 writes `manifest.json` last,
after every process has finished its shards. Unreadable images are skipped (they have no rows),
reported with their reasons as they come, and listed in the manifest.

Tokens do not depend on the number of processes: a shard's batches are the same whichever
process encodes it. (They may depend, in rare last bits, on the batch size: a convolution's
rounding follows the batch, and a latent within rounding of 0 can change sign.)
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image

from ..distributed import Distributed, decided_by_main, gather_objects
from ..errors import WetokError
from ..execution import Execution
from ..files import check_json_record, write_json_record
from ..images import DEFAULT_MAX_PIXELS, center_crop, check_target_pixels, read_image, shorter_side_target, to_tensor
from ..sources import LabelledImages, labelled_images
from ..tokenizer import Tokenizer
from ..weights import weights_fingerprint
from .shards import (
    AUGMENT_VIEWS,
    FORMAT,
    MANIFEST_NAME,
    VERSION,
    ShardEntry,
    ShardManifest,
    read_manifest,
    read_shard,
    shard_name,
    token_dtype,
    write_manifest,
    write_shard,
)

SETTINGS_NAME = "tokenize.json"
SETTINGS_FORMAT = "wetok-tokenize"
DEFAULT_CROP_RANGE = 1.1
"""LlamaGen's `--crop-range`: ten-crop takes its crops from an ADM crop 1.1 times the size."""


# ---- preprocessing ---------------------------------------------------------------------------
def adm_center_crop(image: Image.Image, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                    name: str = "image") -> np.ndarray:
    """ADM's `center_crop_arr` (guided-diffusion, used by LlamaGen): an RGB PIL image -> uint8
    (size, size, 3). While the shorter side is at least 2 * size the image is halved (PIL BOX,
    sides floor-divided by 2); then resized bicubic (PIL) so that the shorter side is `size` (the
    other round(side * size / shorter)); then the centre crop (top-left at ((H - size) // 2,
    (W - size) // 2)). A resize beyond `max_pixels` is refused (`WetokError` naming `name`)."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    height, width = shorter_side_target(image.height, image.width, size)
    check_target_pixels(image.height, image.width, (height, width), max_pixels, name, f"resizing the shorter side to {size}")
    resized = np.asarray(image.resize((width, height), resample=Image.Resampling.BICUBIC))
    return np.ascontiguousarray(center_crop(resized, size, size))


def augmented_views(image: Image.Image, size: int, augment: str, crop_range: float = DEFAULT_CROP_RANGE, *,
                    name: str = "image") -> np.ndarray:
    """The views of one RGB image as LlamaGen extracts codes: uint8 (V, size, size, 3), V = 1
    ("none"), 2 ("flip": the crop, then its mirror) or 10 ("tencrop", see the module's
    description; `crop_range` >= 1 is used by it only)."""
    if augment == "tencrop":
        import torchvision.transforms.functional as TF

        base = Image.fromarray(adm_center_crop(image, int(size * crop_range), name=name))
        return np.stack([np.asarray(crop) for crop in TF.ten_crop(base, [size, size])])
    crop = adm_center_crop(image, size, name=name)
    if augment == "flip":
        return np.stack([crop, crop[:, ::-1]])
    if augment == "none":
        return crop[None]
    raise WetokError(f"unknown augmentation {augment!r}; use {', '.join(AUGMENT_VIEWS)}")


# ---- settings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenizeSettings:
    """What `tokenize` makes. size: the image side in pixels (a multiple of the tokenizer's
    downsample factor); augment: "none", "flip" or "tencrop"; crop_range: ten-crop's enlargement
    (>= 1, used with "tencrop" only); shard_size: images per shard; batch_size: images per
    forward pass; workers: image-loading processes per tokenizing process (0: in the process);
    precision: the tokenizer's working precision (`wetok.execution`; fp32, the default, gives
    the released models' tokens exactly, bf16 and fp16 a few differ), recorded with the run."""

    size: int = 256
    augment: str = "flip"
    crop_range: float = DEFAULT_CROP_RANGE
    shard_size: int = 10000
    batch_size: int = 32
    workers: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        Execution(self.precision)  # the precision's own check
        if self.augment not in AUGMENT_VIEWS:
            raise WetokError(f"unknown augmentation {self.augment!r}; use {', '.join(AUGMENT_VIEWS)}")
        for key in ("size", "shard_size", "batch_size"):
            if getattr(self, key) < 1:
                raise WetokError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.workers < 0:
            raise WetokError(f"workers must be 0 or more, got {self.workers}")
        if not (math.isfinite(self.crop_range) and 1.0 <= self.crop_range <= 4.0):
            raise WetokError(f"crop_range must be between 1 and 4 (LlamaGen: 1.1), got {self.crop_range}")

    @property
    def views(self) -> int:
        return AUGMENT_VIEWS[self.augment]

    @property
    def recorded_crop_range(self) -> float | None:
        """crop_range as the manifest records it: None unless ten-crop uses it."""
        return self.crop_range if self.augment == "tencrop" else None


def tokenizer_record(model: Tokenizer) -> dict[str, Any]:
    """The manifest's `tokenizer`: architecture hash, weights file name, preset, config and the
    weights' fingerprint (`wetok.weights.weights_fingerprint`)."""
    return {"architecture": model.config.architecture_hash(), "weights_file": model.identity.weights_file,
            "preset": model.identity.preset, "config": model.config.to_dict(), "weights_sha256": weights_fingerprint(model)}


def _files_digest(images: LabelledImages) -> str:
    digest = hashlib.sha256()
    for label, name in zip(images.labels, images.relative()):
        digest.update(f"{label}\t{name}\n".encode())
    return digest.hexdigest()


def settings_record(tokenizer: dict[str, Any], images: LabelledImages, settings: TokenizeSettings) -> dict[str, Any]:
    """What `tokenize.json` holds, and what a rerun must match to resume (`tokenizer`:
    `tokenizer_record` of the model)."""
    return {"format": SETTINGS_FORMAT, "version": VERSION,
            "tokenizer": tokenizer,
            "size": settings.size, "augment": settings.augment, "views": settings.views,
            "crop_range": settings.recorded_crop_range, "shard_size": settings.shard_size, "precision": settings.precision,
            "classes": images.classes,
            "files": len(images.files), "files_sha256": _files_digest(images)}


def _check_settings(path: Path, record: dict[str, Any]) -> None:
    check_json_record(path, record, what="wetok tokenize", names=lambda k: "the file list" if k.startswith("files") else k)


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class TokenizeResult:
    """How a run went. manifest: the finished shards' manifest (process 0; None on the others);
    processed: images this run read across all processes (readable or not); seconds: its wall
    time; skipped: (relative path, reason) of the images found unreadable this run, all processes;
    shards_written / shards_skipped: shards encoded this run, and found finished from before."""

    path: Path
    manifest: ShardManifest | None
    processed: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    shards_written: int = 0
    shards_skipped: int = 0

    @property
    def images_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Plan:
    """What every process works from (process 0's listing, sent as plain strings and numbers):
    the images (paths relative to `root`), the shards to encode, whether the manifest exists, and
    the tokenizer's record (`tokenizer_record`: its weights hashed once, for both files)."""

    root: str
    names: list[str]
    labels: list[int]
    classes: list[str]
    pending: list[int]
    shards: int
    complete: bool
    tokenizer: dict[str, Any]

    @property
    def images(self) -> LabelledImages:
        root = Path(self.root)
        return LabelledImages(files=[root / n for n in self.names], labels=self.labels, classes=self.classes, root=root)


def tokenize(model: Tokenizer, data: str | Path, output: str | Path, settings: TokenizeSettings, *, info: Distributed,
             layout: str = "auto", split: str = "train", progress: bool | None = None,
             compile: bool = False, channels_last: bool | None = None) -> TokenizeResult:
    """Tokenize the labelled image folder `data` (`labelled_images(data, layout, split)`) into the
    shard directory `output` with `model` (float32 weights: the manifest fingerprints them, and
    `settings.precision` is applied after); this process encodes its share of the shards not yet
    written. Call on every process of the job. Returns once the manifest exists (process 0 writes
    it). `progress`: a bar with images/s on process 0 (None: on a terminal only); `compile` and
    `channels_last`: how the tokenizer runs (`Tokenizer.set_execution`)."""
    output = Path(output)
    if settings.size % model.downsample:
        raise WetokError(f"--size {settings.size} is not a multiple of the tokenizer's downsample factor {model.downsample}")
    model = model.float().eval()
    start = time.perf_counter()
    # every process works from process 0's listing
    plan = decided_by_main(lambda: _prepare(model, Path(data), output, settings, layout, split), info)
    model.set_execution(settings.precision, channels_last=channels_last, compile=compile)
    mine = plan.pending[info.rank::info.world]
    processed, skipped = _encode_shards(model, plan.images, output, settings, mine, info, progress)
    reports = cast("list[tuple[int, list[tuple[str, str]]]]", gather_objects((processed, skipped), info))  # all shards written
    result = TokenizeResult(path=output, manifest=None, processed=sum(n for n, _ in reports),
                            skipped=[s for _, found in reports for s in found], shards_written=len(plan.pending),
                            shards_skipped=plan.shards - len(plan.pending))
    if info.main:
        result.manifest = _finish(model, plan, output, settings)
    result.seconds = time.perf_counter() - start
    return result


def _prepare(model: Tokenizer, data: Path, output: Path, settings: TokenizeSettings, layout: str, split: str) -> _Plan:
    """Process 0: list the images, check or write `tokenize.json`, find the shards to encode."""
    images = labelled_images(data, layout, split)
    tokenizer = tokenizer_record(model)
    record = settings_record(tokenizer, images, settings)
    path = output / SETTINGS_NAME
    if output.exists() and not output.is_dir():
        raise WetokError(f"{output}: exists and is not a folder")
    if path.exists():
        _check_settings(path, record)
    elif output.exists() and any(output.iterdir()):
        raise WetokError(f"{output}: a folder that holds other files; give an empty or new folder for the token shards")
    else:
        output.mkdir(parents=True, exist_ok=True)
        write_json_record(path, record)
    for stale in [*output.glob(".shard-*.tmp"), *output.glob(f".{MANIFEST_NAME}.*.tmp")]:  # a killed run's
        stale.unlink(missing_ok=True)
    shards = math.ceil(len(images.files) / settings.shard_size)
    complete = (output / MANIFEST_NAME).exists()
    pending = [] if complete else [k for k in range(shards) if not (output / shard_name(k)).exists()]
    return _Plan(root=str(images.root), names=images.relative(), labels=images.labels, classes=images.classes,
                 pending=pending, shards=shards, complete=complete, tokenizer=tokenizer)


def _load(files: list[Path], settings: TokenizeSettings, root: Path) -> Iterator[tuple[int, np.ndarray | str]]:
    """(position, views uint8 (V, S, S, 3) or the reason it is unreadable) of `files`, in order,
    read by `settings.workers` loader processes (none: here)."""
    from torch.utils.data import DataLoader

    dataset = _ViewFiles(files, settings, root)
    if settings.workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    return iter(DataLoader(dataset, batch_size=None, num_workers=settings.workers, collate_fn=_as_is))


def _as_is(item: Any) -> Any:
    return item


class _ViewFiles:
    """A map-style dataset: item i is (i, views of files[i]) or (i, the one-line reason it failed)."""

    def __init__(self, files: list[Path], settings: TokenizeSettings, root: Path) -> None:
        self.files, self.settings, self.root = files, settings, root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | str]:
        path = self.files[i]
        name = path.relative_to(self.root).as_posix()
        s = self.settings
        try:
            return i, augmented_views(read_image(path), s.size, s.augment, s.crop_range, name=name)
        except WetokError as exc:
            return i, str(exc).replace(str(path), name, 1)


def _encode_shards(model: Tokenizer, images: LabelledImages, output: Path, settings: TokenizeSettings, shards: list[int],
                   info: Distributed, progress: bool | None) -> tuple[int, list[tuple[str, str]]]:
    """Encode and write `shards`; returns (files read, [(relative path, reason) of the unreadable])."""
    from tqdm.auto import tqdm

    size, count = settings.shard_size, len(images.files)
    total = sum(min((k + 1) * size, count) - k * size for k in shards)
    show = (sys.stderr.isatty() if progress is None else progress) and info.main
    desc = "tokenize" if not info.enabled else f"tokenize (process 0 of {info.world})"
    labels = np.asarray(images.labels, dtype=np.int64)
    skipped: list[tuple[str, str]] = []
    with tqdm(total=total, desc=desc, unit="img", disable=not show, dynamic_ncols=True, file=sys.stderr) as bar:
        for k in shards:
            tokens, kept = _encode_shard(model, images, range(k * size, min((k + 1) * size, count)), settings, bar, skipped)
            image = np.repeat(kept, settings.views)
            view = np.tile(np.arange(settings.views, dtype=np.uint8), len(kept))
            write_shard(output / shard_name(k), tokens, labels[image], image, view)
    return total, skipped


def _encode_shard(model: Tokenizer, images: LabelledImages, indices: range, settings: TokenizeSettings, bar: Any,
                  skipped: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """The tokens (rows, h, w, G) of the images `indices` that can be read, in batches of
    `settings.batch_size` images, and their indices int64 (readable,); the others are appended to
    `skipped` and reported on stderr. `bar` (tqdm) advances one per file."""
    dtype, side = token_dtype(model.bits_per_group), settings.size // model.downsample
    files = images.files[indices.start:indices.stop]
    kept: list[int] = []
    parts: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for i, views_or_reason in _load(files, settings, images.root):
        if isinstance(views_or_reason, str):
            skipped.append((files[i].relative_to(images.root).as_posix(), views_or_reason))
            bar.write(f"wetok tokenize: skipped {views_or_reason}", file=sys.stderr)
        else:
            kept.append(indices.start + i)
            batch.append(views_or_reason)
            if len(batch) == settings.batch_size:
                parts.append(_encode(model, batch, dtype))
                batch = []
        bar.update(1)
    if batch:
        parts.append(_encode(model, batch, dtype))
    tokens = np.concatenate(parts) if parts else np.empty((0, side, side, model.groups), dtype=dtype)
    return tokens, np.asarray(kept, dtype=np.int64)


def _encode(model: Tokenizer, views: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """Tokens of a batch of images' views: (sum of views, h, w, G) of `dtype`, views of an image consecutive."""
    with torch.inference_mode():
        tokens = model.encode(to_tensor(np.concatenate(views)))
    return tokens.cpu().numpy().astype(dtype)


def _finish(model: Tokenizer, plan: _Plan, output: Path, settings: TokenizeSettings) -> ShardManifest:
    """Process 0, once every shard is written: the manifest (written unless it exists)."""
    if plan.complete:
        return read_manifest(output)
    names = plan.names
    entries, present = [], np.zeros(len(names), dtype=bool)
    for k in range(plan.shards):
        image = read_shard(output / shard_name(k), ("image",))["image"]
        present[image] = True
        entries.append(ShardEntry(shard_name(k), rows=int(image.size), images=int(image.size) // settings.views))
    if not present.any():
        raise WetokError(f"{plan.root}: none of the {len(names)} images could be read; no manifest written")
    h, w = settings.size // model.downsample, settings.size // model.downsample
    manifest = ShardManifest(
        format=FORMAT, version=VERSION, tokenizer=plan.tokenizer, grid=(h, w), groups=model.groups,
        bits_per_group=model.bits_per_group, dtype=token_dtype(model.bits_per_group).name, size=settings.size,
        augment=settings.augment, views=settings.views, crop_range=settings.recorded_crop_range, shard_size=settings.shard_size,
        classes=tuple(plan.classes), files=tuple(names), file_labels=tuple(plan.labels), shards=tuple(entries),
        unreadable=tuple(n for n, ok in zip(names, present) if not ok), images=int(present.sum()))
    write_manifest(output, manifest)
    return manifest
