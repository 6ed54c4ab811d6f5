"""The images of an evaluation set: listing them (any folder, recursive; ImageNet val flat or in
class folders; COCO val2017), reading them under the protocol, and dealing batches to processes.

The order is fixed (sorted relative paths), so image i is the same file for every process and
every run; the file list is cut into batches of consecutive images and process r of W takes
batches r, r+W, r+2W, ...: no image is repeated or dropped, whatever W is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import WetokError
from ..images import IMAGE_SUFFIXES, read_image, resize_shorter_center_crop
from ..images import list_images as list_image_files
from ..metrics.psnr_ssim import WIN_SIZE

_IMAGENET_VAL = re.compile(r"ILSVRC2012_val_\d{8}\.jpe?g", re.IGNORECASE)
_IMAGENET_CLASS = re.compile(r"n\d{8}")
_COCO = re.compile(r"\d{12}\.jpe?g", re.IGNORECASE)


def list_evaluation_images(root: str | Path, *, limit: int | None = None) -> list[Path]:
    """Image files under `root` (recursive; hidden files and folders left out), sorted by relative
    path; the first `limit` of them when given. Raises `WetokError` for a missing/empty folder."""
    files = list_image_files(root, limit=limit)
    if not files:
        raise WetokError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def dataset_kind(root: str | Path, files: list[Path]) -> str:
    """"imagenet-val", "imagenet-val-classes", "coco-val2017" or "folder", from the file names."""
    root = Path(root)
    names = [p.name for p in files]
    if names and all(_IMAGENET_VAL.fullmatch(n) for n in names):
        relative = [p.relative_to(root).parts for p in files]
        if all(len(parts) == 2 and _IMAGENET_CLASS.fullmatch(parts[0]) for parts in relative):
            return "imagenet-val-classes"
        return "imagenet-val"
    if names and all(_COCO.fullmatch(n) for n in names):
        return "coco-val2017"
    return "folder"


def describe_files(root: str | Path, files: list[Path]) -> list[tuple[str, int, int]]:
    """(relative path, size in bytes, modification time in ns) of each file: what cached
    statistics of these files depend on."""
    root = Path(root)
    out: list[tuple[str, int, int]] = []
    for p in files:
        try:
            st = p.stat()
            out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p.relative_to(root).as_posix(), -1, -1))
    return out


def dataset_summary(root: str | Path, files: list[Path]) -> dict[str, Any]:
    """JSON-able description: root, kind, number of files."""
    return {"root": str(Path(root).resolve()), "kind": dataset_kind(root, files), "num_files": len(files)}


class _ImageSet(torch.utils.data.Dataset):
    """Item i: ("ok", i, uint8 (H, W, 3)) under the protocol, or ("skip", i, reason)."""

    def __init__(self, files: list[Path], size: int | None, max_side: int | None) -> None:
        self.files, self.size, self.max_side = files, size, max_side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[str, int, Any]:
        try:
            image = np.asarray(read_image(self.files[i]))
            if self.size is not None:  # the resize is bounded by the pixel limit too (an extreme aspect ratio)
                return ("ok", i, np.ascontiguousarray(resize_shorter_center_crop(image, self.size, name=str(self.files[i]))))
        except WetokError as exc:
            return ("skip", i, str(exc))
        h, w = image.shape[:2]
        if self.max_side is not None and max(h, w) > self.max_side:
            return ("skip", i, f"{w}x{h}: a side above {self.max_side} px (original-resolution protocol)")
        if min(h, w) < WIN_SIZE:
            return ("skip", i, f"{w}x{h}: smaller than the {WIN_SIZE}x{WIN_SIZE} SSIM window")
        return ("ok", i, image)


def _shard(num_images: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches: consecutive runs of `batch_size` indices, every `world`-th run."""
    batches = [list(range(s, min(s + batch_size, num_images))) for s in range(0, num_images, batch_size)]
    return batches[rank::world]
