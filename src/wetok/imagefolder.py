"""Listing the images of an evaluation set: any folder (recursive), ImageNet val (flat or in class
folders), COCO val2017. The order is fixed (sorted relative paths), so image i is the same file
for every process and every run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import WetokError
from .images import IMAGE_SUFFIXES
from .images import list_images as list_image_files

_IMAGENET_VAL = re.compile(r"ILSVRC2012_val_\d{8}\.jpe?g", re.IGNORECASE)
_IMAGENET_CLASS = re.compile(r"n\d{8}")
_COCO = re.compile(r"\d{12}\.jpe?g", re.IGNORECASE)


def list_images(root: str | Path, *, limit: int | None = None) -> list[Path]:
    """Image files under `root` (recursive; hidden files and folders left out), sorted by relative
    path; the first `limit` of them when given. Raises `WetokError` for a missing/empty folder."""
    root = Path(root)
    files = list_image_files(root)
    if not files:
        raise WetokError(f"{root}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if limit is not None:
        if limit <= 0:
            raise WetokError(f"limit must be positive, got {limit}")
        files = files[:limit]
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
