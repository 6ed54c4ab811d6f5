"""Token shards: the token type, the reader over files written as plain `np.savez` archives and a
JSON manifest, its strict checks (each a one-line error naming the file), and the tokenizer check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from support import TINY, TINY_GD
from wetok.ar.shards import (
    MANIFEST_NAME,
    ShardEntry,
    ShardManifest,
    open_shards,
    read_manifest,
    shard_name,
    token_dtype,
    write_manifest,
    write_shard,
)
from wetok.errors import WetokError

FILES = ["cat/0.png", "cat/1.png", "cat/broken.jpg", "dog/0.png", "dog/1.png"]
LABELS = [0, 0, 0, 1, 1]
READABLE = [0, 1, 3, 4]  # image 2 could not be read


def _tokens(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 16, size=(rows, 2, 2, 2)).astype(np.uint8)


def _manifest(**changes) -> ShardManifest:
    fields = {
        "format": "wetok-token-shards", "version": 1,
        "tokenizer": {"architecture": TINY.architecture_hash(), "weights_file": "tok", "preset": None, "config": TINY.to_dict(),
                      "weights_sha256": "ab" * 32},
        "grid": (2, 2), "groups": 2, "bits_per_group": 4, "dtype": "uint8", "size": 8, "augment": "flip", "views": 2,
        "crop_range": None, "shard_size": 3, "classes": ("cat", "dog"), "files": tuple(FILES), "file_labels": tuple(LABELS),
        "shards": (ShardEntry("shard-00000.npz", 4, 2), ShardEntry("shard-00001.npz", 4, 2)), "unreadable": ("cat/broken.jpg",),
        "images": 4,
    }
    return ShardManifest(**{**fields, **changes})


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Two shards of images (0, 1) and (3, 4), two views each, as plain np.savez archives."""
    for k, images in enumerate([[0, 1], [3, 4]]):
        image = np.repeat(np.asarray(images, dtype=np.int64), 2)
        np.savez(tmp_path / shard_name(k), tokens=_tokens(4, k), labels=np.asarray(LABELS, dtype=np.int64)[image], image=image,
                 view=np.tile(np.arange(2, dtype=np.uint8), 2))
    write_manifest(tmp_path, _manifest())
    return tmp_path


def _edit(directory: Path, **changes) -> None:
    path = directory / MANIFEST_NAME
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def _rewrite(path: Path, **arrays: np.ndarray) -> None:
    with np.load(path) as data:
        kept = {k: data[k] for k in data.files}
    kept.update(arrays)
    np.savez(path, **kept)


def test_token_dtype_is_the_smallest_unsigned_type():
    assert [token_dtype(b).name for b in (1, 4, 8, 9, 16, 17, 24)] == ["uint8"] * 3 + ["uint16"] * 2 + ["uint32"] * 2


def test_open_shards_reads_every_row_in_order(shards: Path):
    s = open_shards(shards)
    assert s.tokens.shape == (8, 2, 2, 2) and s.tokens.dtype == np.uint8
    assert np.array_equal(s.tokens, np.concatenate([_tokens(4, 0), _tokens(4, 1)]))
    assert s.image.tolist() == [0, 0, 1, 1, 3, 3, 4, 4] and s.image.dtype == np.int64
    assert s.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and s.labels.dtype == np.int64
    assert s.view.tolist() == [0, 1] * 4 and s.view.dtype == np.uint8
    assert s.num_images == 4 and s.views == 2
    assert s.rows_of_image.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert s.image[s.rows_of_image[:, 0]].tolist() == READABLE
    m = s.manifest
    assert m.grid == (2, 2) and m.classes == ("cat", "dog") and m.unreadable == ("cat/broken.jpg",) and m.rows == 8
    assert m.tokenizer["preset"] is None and m.tokenizer.get("weights_file") == "tok"
    assert read_manifest(shards) == m  # the JSON holds the whole manifest


def test_write_shard_is_atomic_and_readable(tmp_path: Path):
    image = np.asarray([5, 5], dtype=np.int64)
    write_shard(tmp_path / "shard-00000.npz", _tokens(2, 3), np.asarray([1, 1]), image, np.asarray([0, 1]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.npz"]
    with np.load(tmp_path / "shard-00000.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["image", "labels", "tokens", "view"]
        assert data["labels"].dtype == np.int64 and data["view"].dtype == np.uint8 and np.array_equal(data["tokens"], _tokens(2, 3))


@pytest.mark.parametrize("changes, message", [
    ({"grid": [2]}, "grid: expected [h, w]"),
    ({"files": FILES[:3] + [7] + FILES[4:]}, "files[3]: expected a str, got 7"),
    ({"images": "4"}, "images: expected an integer of at least 0, got '4'"),
    ({"views": True}, "views: expected an integer of at least 1, got True"),
    ({"shards": [{"name": "shard-00000.npz", "rows": 4}]}, "shards[0]: expected the keys name, rows, images"),
    ({"tokenizer": {"architecture": "x"}}, "tokenizer: expected an object of architecture, weights_file, preset, config, weights_sha256"),
    ({"images": KeyError}, "missing keys images"),
    ({"extra": 1}, "unknown keys extra"),
    ({"format": "something"}, "not a wetok-token-shards manifest"),
    ({"version": 2}, "not a wetok-token-shards version 1 manifest"),
    ({"dtype": "uint16"}, "dtype 'uint16' does not fit 4-bit sub-tokens"),
    ({"file_labels": [0, 0, 0, 1, 2]}, "file_labels outside 0..1"),
    ({"images": 3}, "do not add up"),
    ({"augment": "tencrop"}, "augment 'tencrop' with 2 views"),
    ({"grid": [4, 4]}, "grid (4, 4), 2 groups of 4 bits are not what the tokenizer (d4, ch 32"),
    ({"images": 0, "shards": [{"name": f"shard-0000{k}.npz", "rows": 0, "images": 0} for k in (0, 1)]}, "no readable images"),
    ({"shards": [{"name": "shard-00001.npz", "rows": 4, "images": 2}] * 2},
     "shards[0]: expected shard-00000.npz with 2 rows per image, got 'shard-00001.npz' with 4 rows of 2 images"),
])
def test_a_bad_manifest_is_one_line_naming_it(shards: Path, changes: dict, message: str):
    _edit(shards, **changes)
    with pytest.raises(WetokError, match=re.escape(str(shards / MANIFEST_NAME)) + ": .*" + re.escape(message)) as info:
        open_shards(shards)
    assert "\n" not in str(info.value)


def test_not_json_and_no_manifest(shards: Path, tmp_path: Path):
    (shards / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(WetokError, match="not a JSON manifest"):
        open_shards(shards)
    (shards / MANIFEST_NAME).unlink()
    with pytest.raises(WetokError, match="no manifest.json: not a folder of token shards"):
        open_shards(shards)
    (shards / "tokenize.json").write_text("{}")
    with pytest.raises(WetokError, match="an unfinished wetok tokenize run"):
        open_shards(shards)
    with pytest.raises(WetokError, match="no such folder of token shards"):
        open_shards(tmp_path / "nothing")


def test_shards_that_do_not_match_the_manifest_are_refused(shards: Path):
    first = shards / shard_name(0)
    cases = [
        (lambda: _rewrite(first, tokens=_tokens(4, 0).astype(np.uint16)), "tokens (4, 2, 2, 2) uint16; the manifest says"),
        (lambda: _rewrite(first, tokens=_tokens(3, 0)), "different numbers of rows (tokens 3, labels 4, image 4, view 4)"),
        (lambda: _rewrite(first, tokens=np.full((4, 2, 2, 2), 16, np.uint8)), "a token value 16 is outside 0..15"),
        (lambda: _rewrite(first, image=np.asarray([0, 1, 1, 1])), "not images 0..2 in order, each with views 0..1"),
        (lambda: _rewrite(first, image=np.asarray([3, 3, 4, 4])), "not images 0..2 in order"),
        (lambda: _rewrite(first, view=np.asarray([1, 0, 0, 1], np.uint8)), "not images 0..2 in order"),
        (lambda: _rewrite(first, labels=np.asarray([0, 0, 1, 1])), "labels differ from those of the manifest's files"),
        (lambda: _rewrite(first, labels=np.asarray([0, 0, 0, 0], np.int32)), "labels has shape (4,) and type int32"),
        (lambda: _rewrite(first, extra=np.zeros(1)), "holds extra, image, labels, tokens, view, not the arrays of a token shard"),
        (lambda: _rewrite(first, labels=np.asarray([{"x": 1}] * 4, dtype=object)), "not a readable token shard"),  # a pickle
        (lambda: first.write_bytes(b"PK\x03\x04 truncated"), "not a readable token shard"),
        (lambda: first.unlink(), "missing"),
    ]
    original = first.read_bytes()
    for damage, message in cases:
        first.write_bytes(original)
        damage()
        with pytest.raises(WetokError, match=re.escape(f"{first}: ") + ".*" + re.escape(message)):
            open_shards(shards)
    first.write_bytes(original)
    open_shards(shards)


def test_a_manifest_whose_images_are_not_in_the_shards_is_refused(shards: Path):
    _edit(shards, unreadable=["cat/0.png"])  # the counts add up, but image 0 has rows and image 2 none
    with pytest.raises(WetokError, match="unreadable lists cat/0.png, but the files without rows are cat/broken.jpg"):
        open_shards(shards)


def test_check_tokenizer(shards: Path):
    s = open_shards(shards)
    s.check_tokenizer(TINY, "ab" * 32, "tok")
    s.check_tokenizer(TINY, None, "a model built here")
    with pytest.raises(WetokError, match=rf"other.ckpt: the token shards .* were made by tok \(architecture {TINY.architecture_hash()}\), "
                       rf"not by this tokenizer \(architecture {TINY_GD.architecture_hash()}: d2"):
        s.check_tokenizer(TINY_GD, "ab" * 32, "other.ckpt")
    with pytest.raises(WetokError, match=r"retrained: the token shards .* were made by tok, whose weights differ from these "
                       r"\(same architecture, other weights: sha256 abababababab\.\.\., not cdcdcdcdcdcd\.\.\.\)"):
        s.check_tokenizer(TINY, "cd" * 32, "retrained")
