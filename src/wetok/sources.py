"""Where a dataset's images are: the layouts training reads (`resolve_source`) and labelled image
folders, one class per sub-folder (`labelled_images`), as `wetok tokenize` reads them.

Labelled folders follow torchvision's `ImageFolder`: the classes are the sorted names of the
sub-folders of the class root that hold images (recursively, any depth; hidden names left out;
a link to a folder counts as a folder), class i is label i. ImageNet's `train/` is recognised
(root/train/<wnid>/...), so the labels are the standard ImageNet class indices (the 1000 wnids
sorted). A folder with images directly in it and no class folders is one unlabelled class: name
"" (the empty string), label 0. Images directly in a folder beside class folders are refused (a
one-line `WetokError` naming one of them): they would belong to no class. The order is fixed
(sorted by class, then by the path relative to the class root), so image i is the same file for
every process and every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WetokError
from .images import IMAGE_SUFFIXES, list_images

LAYOUTS = ("auto", "folder", "imagenet")
"""The layouts of labelled folders: "folder" (the classes are root's sub-folders), "imagenet"
(they are those of root/<split>/), "auto" (root/<split>/ when it exists, else root)."""


def resolve_source(root: str | Path, layout: str = "auto", split: str = "train") -> tuple[str, list[Path]]:
    """Which layout `root` has and its files: ("tar", shards) or ("folder", images).

    layout: "folder" (every image below root), "imagenet" (root/<split>/...), "coco"
    (root/<split>2017/ or root/<split>/), "tar" (root/*.tar shards, or root itself a .tar), or
    "auto": tar shards when root holds *.tar files, else the split directory when it exists,
    else the whole folder.
    """
    root = Path(root)
    if not root.exists():
        raise WetokError(f"{root}: no such data directory")
    if layout in ("tar", "auto"):
        shards = [root] if root.is_file() and root.suffix == ".tar" else sorted(root.glob("*.tar")) if root.is_dir() else []
        if shards:
            return "tar", shards
        if layout == "tar":
            raise WetokError(f"{root}: no .tar shards")
    if not root.is_dir():
        raise WetokError(f"{root}: not a directory of images")
    folder = root
    if layout in ("imagenet", "coco", "auto"):
        candidates = [root / split] + ([root / f"{split}2017"] if layout in ("coco", "auto") else [])
        found = [c for c in candidates if c.is_dir()]
        if found:
            folder = found[-1] if layout == "coco" else found[0]
        elif layout != "auto":
            raise WetokError(f"{root}: no {split}/ directory for the {layout} layout")
    files = list_images(folder)
    if not files:
        raise WetokError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return "folder", files


@dataclass(frozen=True)
class LabelledImages:
    """The images of a labelled folder, in their fixed order.

    files: the image paths, image i is files[i]; labels: int label of each (0 .. len(classes)-1);
    classes: the class names, label i is classes[i] ([""] for an unlabelled folder);
    root: the class root (the folder holding the class folders, e.g. DATA/train).
    """

    files: list[Path]
    labels: list[int]
    classes: list[str]
    root: Path

    def relative(self) -> list[str]:
        """The files' paths relative to `root`, with "/" separators (what manifests record)."""
        return [p.relative_to(self.root).as_posix() for p in self.files]


def class_root(root: str | Path, layout: str = "auto", split: str = "train") -> Path:
    """The folder whose sub-folders are the classes (see `LAYOUTS`); one line when it is missing."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise WetokError(f"unknown layout {layout!r}; use {', '.join(LAYOUTS)}")
    if not root.exists():
        raise WetokError(f"{root}: no such data directory")
    if not root.is_dir():
        raise WetokError(f"{root}: not a directory of images")
    if layout == "folder":
        return root
    if (root / split).is_dir():
        return root / split
    if layout == "imagenet":
        raise WetokError(f"{root}: no {split}/ directory for the imagenet layout")
    return root


def labelled_images(root: str | Path, layout: str = "auto", split: str = "train") -> LabelledImages:
    """The images below `class_root(root, layout, split)` with labels from their class folders
    (see the module's description). Raises a one-line `WetokError` for a missing folder, no
    images at all, or images lying beside class folders."""
    base = class_root(root, layout, split)
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError as exc:
        raise WetokError(f"{base}: cannot list the folder: {exc.strerror or exc}") from None
    loose = [Path(e.path) for e in entries if not e.name.startswith(".") and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
             and not _is_folder(e)]
    classes: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for entry in entries:
        if entry.name.startswith(".") or not _is_folder(entry):
            continue
        found = list_images(entry.path)
        if found:
            files.extend(found)
            labels.extend([len(classes)] * len(found))
            classes.append(entry.name)
    if classes and loose:
        raise WetokError(f"{base}: {len(loose)} image(s) lie beside the class folders (e.g. {loose[0].name}); "
                         "move them into a class folder or remove them")
    if not classes:
        if not loose:
            raise WetokError(f"{base}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        files, labels, classes = loose, [0] * len(loose), [""]
    return LabelledImages(files=files, labels=labels, classes=classes, root=base)


def _is_folder(entry: os.DirEntry) -> bool:
    """A folder, or a link to one (class folders are often links into a full dataset)."""
    try:
        return entry.is_dir()
    except OSError:
        return False
