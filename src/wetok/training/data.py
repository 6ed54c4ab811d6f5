"""Training data: image folders (recursive), ImageNet and COCO layouts, webdataset-style tar shards.

Every sample is an image file read with `wetok.images.read_image`, its shorter side resized
(`wetok.images.resize_shorter_side`), randomly cropped to size x size and randomly flipped,
then returned as float32 (3, size, size) in [-1, 1]. Randomness comes from a per-sample seed
derived from (seed, epoch, position), so the stream is the same whatever the number of loader
workers, and a resumed run sees exactly the images it would have seen (folder layouts).

Unreadable images (corrupt, truncated, not images) are skipped: the next file is taken instead,
and the batches carry how many were skipped so the trainer can count them.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    Sampler,
)

from ..errors import WetokError
from ..images import (
    IMAGE_SUFFIXES,
    decode_image,
    list_images,
    read_image,
    resize_shorter_center_crop,
    resize_shorter_side,
    to_tensor,
)
from ..sources import resolve_source

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 50


# ---- the transform --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomCrop:
    """Shorter-side resize, random crop, random flip: uint8 (H, W, 3) -> float32 (3, size, size) in [-1, 1].

    resize: shorter side before cropping (None keeps the image, but never below `size`);
    random_scale: (lo, hi) multiplies `resize` by a uniform factor per sample.

    A resize whose result would exceed the decompression-bomb limit (`images.DEFAULT_MAX_PIXELS`:
    an extreme aspect ratio such as 12000 x 1) raises `WetokError`, so that the sample is skipped
    like an unreadable file instead of allocating gigabytes.
    """

    size: int
    resize: int | None = None
    random_scale: tuple[float, float] | None = None
    flip: bool = True

    def __call__(self, image: np.ndarray, generator: torch.Generator, name: str = "image") -> torch.Tensor:
        """`name` (the file) is what a refusal names."""
        rand = torch.rand(4, generator=generator).tolist()
        target = self.resize if self.resize is not None else min(image.shape[:2])
        if self.random_scale is not None and self.resize is not None:
            lo, hi = self.random_scale
            target = round(target * (lo + (hi - lo) * rand[0]))
        target = max(target, self.size)
        if min(image.shape[:2]) != target:
            image = resize_shorter_side(image, target, name=name)
        h, w = image.shape[:2]
        top = int(rand[1] * (h - self.size + 1))
        left = int(rand[2] * (w - self.size + 1))
        crop = image[top : top + self.size, left : left + self.size]
        if self.flip and rand[3] < 0.5:
            crop = crop[:, ::-1]
        return to_tensor(np.ascontiguousarray(crop))[0]


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample from the run seed, the epoch and the sample's position."""
    mixed = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + position * 0x94D049BB133111EB) & (2**64 - 1)
    mixed ^= mixed >> 31
    return mixed & (2**63 - 1)


# ---- folder datasets ----------------------------------------------------------------------------
class ImageFiles(Dataset):
    """Map-style dataset over image files; items are indexed by (file index, sample seed).

    Returns {"image": float32 (3, size, size) in [-1, 1], "skipped": int unreadable files passed over}.
    """

    def __init__(self, files: Sequence[Path], transform: RandomCrop, *, cache_mb: float = 0) -> None:
        self.files = list(files)
        self.transform = transform
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[int, np.ndarray] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        index, seed = key
        generator = torch.Generator().manual_seed(seed)
        for attempt in range(min(MAX_CONSECUTIVE_FAILURES, len(self.files))):
            position = (index + attempt) % len(self.files)
            try:
                image = self._decoded(position)
                return {"image": self.transform(image, generator, str(self.files[position])), "skipped": attempt}
            except WetokError as exc:
                log.warning("skipping unreadable image: %s", exc)
        raise WetokError(f"{MAX_CONSECUTIVE_FAILURES} unreadable images in a row near {self.files[index]}: check the data")

    def _decoded(self, position: int) -> np.ndarray:
        """uint8 (H, W, 3) of file `position`; kept in memory while the cache budget lasts
        (with small crops decoding dominates: the default model's PNGs take about 13 ms each to
        decode on one core, a 64 px crop's forward and backward far less). Each loader worker
        holds its own cache."""
        image = self._cache.get(position)
        if image is None:
            image = np.asarray(read_image(self.files[position]))
            if self._cached_bytes + image.nbytes <= self.cache_bytes:
                self._cache[position] = image
                self._cached_bytes += image.nbytes
        return image


class EpochSampler(Sampler):
    """Endless (index, seed) stream: a `DistributedSampler` reshuffled every epoch (seed + epoch),
    this rank's share of it, each index paired with its sample seed. `start` skips that many of
    this rank's samples (to resume mid-run)."""

    def __init__(self, size: int, *, rank: int, world: int, seed: int, start: int = 0) -> None:
        self.inner = DistributedSampler(range(size), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.seed, self.start, self.world, self.rank = seed, start, world, rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_epoch = len(self.inner)
        epoch, offset = divmod(self.start, per_epoch)
        while True:
            self.inner.set_epoch(epoch)
            indices = list(self.inner)
            for i in range(offset, per_epoch):
                yield indices[i], sample_seed(self.seed, epoch, i * self.world + self.rank)
            epoch, offset = epoch + 1, 0


# ---- tar shards ---------------------------------------------------------------------------------
class TarShards(IterableDataset):
    """Endless stream from webdataset-style tar shards: every image member (by extension) is a sample.

    Each epoch the shards are shuffled (seed + epoch) and dealt round-robin to ranks and then to
    loader workers; a rank with fewer shards than workers lets the extra workers share them by
    sample index. Yields the same dicts as `ImageFiles`. A resumed run starts a fresh stream
    (seeded by the resume point), so tar data resumes statistically, not sample for sample.
    """

    def __init__(self, shards: Sequence[Path], transform: RandomCrop, *, rank: int, world: int, seed: int, start: int = 0) -> None:
        if len(shards) < world:
            raise WetokError(f"{len(shards)} tar shards for {world} processes: need at least one shard per process")
        self.shards, self.transform = list(shards), transform
        self.rank, self.world, self.seed, self.start = rank, world, seed, start

    def __iter__(self) -> Iterator[dict[str, object]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, position, skipped = 0, 0, 0
        while True:
            order = torch.randperm(len(self.shards), generator=torch.Generator().manual_seed(self.seed + epoch + self.start)).tolist()
            mine = [self.shards[i] for i in order[self.rank :: self.world]]
            share = mine[worker::workers] if len(mine) >= workers else mine
            for shard_i, shard in enumerate(share):
                for member_i, data in enumerate(_tar_images(shard)):
                    if len(mine) < workers and member_i % workers != worker:
                        continue
                    position += 1
                    generator = torch.Generator().manual_seed(sample_seed(self.seed + self.start, epoch, position * workers + worker))
                    try:
                        name = f"{shard}:{member_i}"
                        sample = self.transform(np.asarray(decode_image(data, name)), generator, name)
                    except WetokError as exc:  # unreadable, or a resize beyond the pixel limit
                        log.warning("skipping unreadable image: %s", exc)
                        skipped += 1
                        continue
                    yield {"image": sample, "skipped": skipped}
                    skipped = 0
            epoch += 1


def _tar_images(shard: Path) -> Iterator[bytes]:
    try:
        with tarfile.open(shard) as archive:
            for member in archive:
                if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield handle.read()
    except (tarfile.TarError, OSError) as exc:
        log.warning("skipping unreadable shard %s: %s", shard, exc)


# ---- the loader -----------------------------------------------------------------------------------
def _collate(items: list[dict[str, object]]) -> tuple[torch.Tensor, int]:
    images = torch.stack([item["image"] for item in items])  # type: ignore[misc]
    return images, sum(int(item["skipped"]) for item in items)  # type: ignore[arg-type]


def training_batches(
    root: str | Path,
    transform: RandomCrop,
    *,
    batch_size: int,
    workers: int = 0,
    layout: str = "auto",
    split: str = "train",
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    start_batch: int = 0,
    cache_mb: float = 0,
) -> tuple[Iterator[tuple[torch.Tensor, int]], int]:
    """An endless iterator of (images float32 (batch_size, 3, S, S) in [-1, 1], unreadable count),
    starting at this rank's micro-batch `start_batch`, and the number of source files/shards.
    Nothing here draws from the global RNG: folder layouts give exactly the batches an
    uninterrupted run would have from that point on; tar shards a fresh stream (statistical).

    cache_mb: folder layouts keep up to this many MiB of decoded images in memory (per process)."""
    kind, sources = resolve_source(root, layout, split)
    # the loader's own generator (its workers' base seed): starting the iterator must not draw
    # from the global RNG, whose state a resumed run has just restored
    generator = torch.Generator().manual_seed(sample_seed(seed, rank + 1, start_batch))
    dataset: Dataset
    if kind == "tar":
        dataset = TarShards(sources, transform, rank=rank, world=world, seed=seed, start=start_batch)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate, drop_last=True,
                            persistent_workers=False, generator=generator)
    else:
        dataset = ImageFiles(sources, transform, cache_mb=cache_mb)
        sampler = EpochSampler(len(dataset), rank=rank, world=world, seed=seed, start=start_batch * batch_size)
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=_collate,
                            drop_last=True, generator=generator)
    return iter(loader), len(sources)


def evaluation_images(folder: str | Path, size: int, max_images: int) -> torch.Tensor:
    """Held-out images with the evaluation protocol (shorter side to `size`, centre crop):
    float32 (N, 3, size, size) in [-1, 1], the first `max_images` files by path; unreadable skipped."""
    crops = []
    for path in list_images(folder):
        try:
            crops.append(resize_shorter_center_crop(np.asarray(read_image(path)), size))
        except WetokError as exc:
            log.warning("skipping unreadable evaluation image: %s", exc)
        if len(crops) == max_images:
            break
    if not crops:
        raise WetokError(f"{folder}: no readable evaluation images")
    return to_tensor(np.stack(crops))
