"""Labelled image folders: classes from sub-folders (sorted, ImageNet train/ recognised), the fixed
order of the images, unlabelled folders, and what is refused. (`resolve_source`, the training
layouts: tests/training/test_data.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import write_photo
from wetok.errors import WetokError
from wetok.sources import class_root, labelled_images


def _tree(root: Path, names: list[str]) -> None:
    for k, name in enumerate(names):
        write_photo(root / name, 8, 8, seed=k)


def test_classes_are_the_sorted_sub_folders_and_the_order_is_class_then_path(tmp_path: Path):
    # "a-b" sorts after "a" as a class, though "a-b/..." sorts before "a/..." as a path
    _tree(tmp_path, ["b/2.png", "b/10.png", "a/z/1.png", "a/0.jpg", "a-b/x.png", ".hidden/h.png", "b/.h.png"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images")
    found = labelled_images(tmp_path, "folder")
    assert found.classes == ["a", "a-b", "b"]
    assert found.relative() == ["a/0.jpg", "a/z/1.png", "a-b/x.png", "b/10.png", "b/2.png"]
    assert found.labels == [0, 0, 1, 2, 2]
    assert found.root == tmp_path and found.files[0] == tmp_path / "a" / "0.jpg"


def test_imagenet_train_is_recognised(tmp_path: Path):
    _tree(tmp_path / "train", ["n01440764/a.JPEG", "n01443537/b.JPEG", "n01443537/c.JPEG"])
    _tree(tmp_path / "val", ["n01440764/v.JPEG"])
    for layout in ("auto", "imagenet"):
        found = labelled_images(tmp_path, layout)
        assert found.root == tmp_path / "train"
        assert found.classes == ["n01440764", "n01443537"] and found.labels == [0, 1, 1]
    assert labelled_images(tmp_path, "auto", "val").relative() == ["n01440764/v.JPEG"]
    assert labelled_images(tmp_path / "train").classes == ["n01440764", "n01443537"]  # the split folder itself
    assert labelled_images(tmp_path, "folder").classes == ["train", "val"]  # "folder": root's own sub-folders
    with pytest.raises(WetokError, match="no test/ directory for the imagenet layout"):
        labelled_images(tmp_path, "imagenet", "test")


def test_a_linked_class_folder_counts(tmp_path: Path):
    _tree(tmp_path / "full", ["dog/1.png", "dog/2.png"])
    _tree(tmp_path / "subset", ["cat/1.png"])
    os.symlink(tmp_path / "full" / "dog", tmp_path / "subset" / "dog")
    found = labelled_images(tmp_path / "subset")
    assert found.classes == ["cat", "dog"] and found.relative() == ["cat/1.png", "dog/1.png", "dog/2.png"]


def test_a_folder_of_images_alone_is_one_unlabelled_class(tmp_path: Path):
    _tree(tmp_path, ["b.png", "a.png", ".c.png"])
    found = labelled_images(tmp_path)
    assert found.classes == [""] and found.labels == [0, 0] and found.relative() == ["a.png", "b.png"]


def test_images_beside_class_folders_missing_and_empty_folders_are_refused(tmp_path: Path):
    _tree(tmp_path / "data", ["cat/1.png", "stray.png", "odd.jpg"])
    with pytest.raises(WetokError, match=r"2 image\(s\) lie beside the class folders \(e.g. odd.jpg\)"):
        labelled_images(tmp_path / "data")
    with pytest.raises(WetokError, match="no such data directory"):
        labelled_images(tmp_path / "nope")
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    with pytest.raises(WetokError, match="no images found"):
        labelled_images(tmp_path / "hollow")
    with pytest.raises(WetokError, match="not a directory"):
        labelled_images(tmp_path / "data" / "stray.png")
    with pytest.raises(WetokError, match="unknown layout 'coco'"):
        class_root(tmp_path, "coco")
