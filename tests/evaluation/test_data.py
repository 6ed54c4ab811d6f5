"""Evaluation image lists: recursive, sorted, hidden files left out; dataset kinds; exactly-once sharding."""

from __future__ import annotations

from pathlib import Path

import pytest

from wetok.errors import WetokError
from wetok.evaluation.data import _shard, dataset_kind, list_evaluation_images


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_recursive_sorted_and_limited(tmp_path: Path) -> None:
    _touch(tmp_path, "b.png", "a/z.JPG", "a/b.jpeg", ".hidden/c.png", "d/.e.png", "notes.txt")
    files = list_evaluation_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/b.jpeg", "a/z.JPG", "b.png"]
    assert len(list_evaluation_images(tmp_path, limit=2)) == 2
    with pytest.raises(WetokError, match="limit"):
        list_evaluation_images(tmp_path, limit=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WetokError, match="no image files"):
        list_evaluation_images(tmp_path / "empty")
    with pytest.raises(WetokError, match="not a folder"):
        list_evaluation_images(tmp_path / "b.png")


def test_dataset_kinds(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    _touch(flat, "ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG")
    assert dataset_kind(flat, list_evaluation_images(flat)) == "imagenet-val"
    classes = tmp_path / "classes"
    _touch(classes, "n01440764/ILSVRC2012_val_00000293.JPEG", "n01443537/ILSVRC2012_val_00000236.JPEG")
    assert dataset_kind(classes, list_evaluation_images(classes)) == "imagenet-val-classes"
    coco = tmp_path / "val2017"
    _touch(coco, "000000000139.jpg", "000000000285.jpg")
    assert dataset_kind(coco, list_evaluation_images(coco)) == "coco-val2017"
    assert dataset_kind(tmp_path, list_evaluation_images(tmp_path)) == "folder"


def test_shards_cover_every_image_once_in_the_same_batches() -> None:
    for n, batch in [(5, 2), (7, 3), (1, 4), (10, 1)]:
        one = _shard(n, batch, 0, 1)
        for world in (2, 3, 4):
            shards = [_shard(n, batch, r, world) for r in range(world)]
            flat = sorted(i for s in shards for b in s for i in b)
            assert flat == list(range(n))
            assert sorted(b for s in shards for b in s) == one  # same batches, only dealt out
