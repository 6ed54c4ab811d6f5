"""Training data: layouts, the crop transform, determinism, resume offsets, unreadable files, tar shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from support import make_images
from wetok.errors import WetokError
from wetok.images import list_images
from wetok.sources import resolve_source
from wetok.training import data as data_module
from wetok.training.data import EpochSampler, RandomCrop, evaluation_images, training_batches


def test_folder_is_recursive_and_sorted(tmp_path):
    paths = make_images(tmp_path, 4)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.png").write_bytes(paths[0].read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_images(tmp_path) == sorted(paths)
    assert resolve_source(tmp_path) == ("folder", sorted(paths))


def test_imagenet_and_coco_layouts(tmp_path):
    train = make_images(tmp_path / "train" / "n01440764", 2)
    make_images(tmp_path / "val", 2, seed=1)
    assert resolve_source(tmp_path, "imagenet") == ("folder", sorted(train))
    assert resolve_source(tmp_path, "auto", "val")[1] == list_images(tmp_path / "val")
    coco = tmp_path / "coco"
    images = make_images(coco / "train2017", 2)
    assert resolve_source(coco, "coco") == ("folder", sorted(images))
    with pytest.raises(WetokError, match="no val/ directory for the coco layout"):
        resolve_source(coco, "coco", "val")


def test_missing_and_empty(tmp_path):
    with pytest.raises(WetokError, match="no such data directory"):
        resolve_source(tmp_path / "nope")
    with pytest.raises(WetokError, match="no images found"):
        resolve_source(tmp_path)


def test_random_crop_shapes_range_and_determinism():
    image = np.random.default_rng(0).integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    crop = RandomCrop(32, resize=40, flip=True)
    a = crop(image, torch.Generator().manual_seed(5))
    b = crop(image, torch.Generator().manual_seed(5))
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    # without resizing the crop is an exact window of the image (possibly flipped)
    window = RandomCrop(32, resize=None, flip=False)(image, torch.Generator().manual_seed(1))
    pixels = np.round((window.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
    found = any(
        np.array_equal(image[t : t + 32, l : l + 32], pixels) for t in range(60 - 31) for l in range(90 - 31)
    )
    assert found
    # small images are upscaled to the crop size
    assert RandomCrop(32, resize=None)(image[:20, :30], torch.Generator().manual_seed(0)).shape == (3, 32, 32)


def test_sampler_resumes_mid_stream_and_shards_disjointly():
    full = EpochSampler(10, rank=0, world=1, seed=3)
    stream = [x for _, x in zip(range(25), full)]
    assert sorted(i for i, _ in stream[:10]) == list(range(10))  # an epoch is a permutation
    assert [i for i, _ in stream[:10]] != [i for i, _ in stream[10:20]]  # reshuffled per epoch
    resumed = [x for _, x in zip(range(12), EpochSampler(10, rank=0, world=1, seed=3, start=13))]
    assert resumed == stream[13:25]
    ranks = [[i for (i, _), _ in zip(EpochSampler(10, rank=r, world=2, seed=3), range(5))] for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(10))


def test_batches_are_reproducible_across_workers_and_resume(tmp_path):
    make_images(tmp_path, 6)
    crop = RandomCrop(32, resize=40)
    a, n = training_batches(tmp_path, crop, batch_size=2, workers=0, seed=1)
    first = [next(a)[0] for _ in range(5)]
    assert n == 6 and first[0].shape == (2, 3, 32, 32)
    b, _ = training_batches(tmp_path, crop, batch_size=2, workers=2, seed=1, start_batch=2)
    for expected in first[2:]:
        assert torch.equal(next(b)[0], expected)


def test_decoded_image_cache_changes_no_pixel_and_keeps_its_budget(tmp_path, monkeypatch):
    make_images(tmp_path, 4)
    crop = RandomCrop(32, resize=40)
    plain, _ = training_batches(tmp_path, crop, batch_size=2, seed=1)
    expected = [next(plain)[0] for _ in range(6)]
    reads: list[str] = []
    real_read = data_module.read_image
    monkeypatch.setattr(data_module, "read_image", lambda path: reads.append(Path(path).name) or real_read(path))
    cached, _ = training_batches(tmp_path, crop, batch_size=2, seed=1, cache_mb=64)
    for batch in expected:  # 12 samples of 4 files: each file decoded once
        assert torch.equal(next(cached)[0], batch)
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 4
    reads.clear()
    files = list_images(tmp_path)
    one_image = np.asarray(real_read(files[0])).nbytes
    small = data_module.ImageFiles(files, crop, cache_mb=1.5 * one_image / 2**20)
    for key in [(0, 1), (1, 2), (0, 3), (1, 4)]:
        small[key]
    assert reads == [files[0].name, files[1].name, files[1].name]  # room for one image: the first stays, the second is re-read


def test_unreadable_images_are_counted_and_skipped(tmp_path, caplog):
    make_images(tmp_path, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "empty.jpg").write_bytes(b"")
    batches, n = training_batches(tmp_path, RandomCrop(32, resize=40), batch_size=5, seed=0)
    assert n == 5
    total = 0
    for _ in range(4):
        images, skipped = next(batches)
        assert torch.isfinite(images).all()
        total += skipped
    # 4 batches of 5 = 4 epochs. Sorted, broken.png is followed by empty.jpg: the sample drawn at
    # broken.png fails twice before a good file, the one drawn at empty.jpg once: 3 failed reads per epoch.
    assert total == 12
    assert "skipping unreadable image" in caplog.text


def test_tar_shards(tmp_path):
    images = make_images(tmp_path / "src", 5)
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(2):
        with tarfile.open(shards / f"shard-{s:04d}.tar", "w") as tar:
            for i, path in enumerate(images[s::2]):
                tar.add(path, arcname=f"{s}_{i}.png")
                data = f"{{\"label\": {i}}}".encode()
                info = tarfile.TarInfo(f"{s}_{i}.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            bad = tarfile.TarInfo(f"{s}_bad.jpg")
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"nope"))
    kind, found = resolve_source(shards)
    assert kind == "tar" and len(found) == 2
    batches, n = training_batches(shards, RandomCrop(32, resize=40), batch_size=2, seed=0, workers=0)
    seen, skipped = 0, 0
    for _ in range(6):
        batch, s = next(batches)
        assert batch.shape == (2, 3, 32, 32)
        seen, skipped = seen + 2, skipped + s
    assert skipped >= 2  # the bad member of each shard, at least once per epoch
    per_rank = [training_batches(shards, RandomCrop(32, resize=40), batch_size=1, seed=0, rank=r, world=2)[0] for r in (0, 1)]
    assert all(next(it)[0].shape == (1, 3, 32, 32) for it in per_rank)
    with pytest.raises(WetokError, match="need at least one shard per process"):
        training_batches(shards, RandomCrop(32), batch_size=1, rank=0, world=3)


def test_evaluation_images_use_centre_crop_protocol(tmp_path):
    make_images(tmp_path, 3, size=(48, 64))
    (tmp_path / "bad.png").write_bytes(b"x")
    images = evaluation_images(tmp_path, 32, max_images=2)
    assert images.shape == (2, 3, 32, 32)
    with pytest.raises(WetokError, match="no readable evaluation images"):
        evaluation_images(_only_bad(tmp_path), 32, 1)


def _only_bad(root: Path) -> Path:
    folder = root / "bad_only"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"junk")
    return folder
