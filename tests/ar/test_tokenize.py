"""Tokenizing a folder into shards: LlamaGen's preprocessing (ADM centre crop, flip, ten-crop),
the tokens against the tokenizer's own encoding, unreadable images skipped and listed, resuming
after an interruption (equal to an uninterrupted run), and reruns with other settings refused.
One and two processes under torchrun: tests/cli/test_tokenize.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import TINY, listing, make_model_dir, photo, write_photo
from wetok.ar import tokenize as tokenize_module
from wetok.ar.shards import open_shards
from wetok.ar.tokenize import TokenizeSettings, adm_center_crop, augmented_views, tokenize
from wetok.distributed import Distributed
from wetok.errors import WetokError
from wetok.images import read_image, to_tensor
from wetok.weights import weights_fingerprint

ONE = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
SMALL = TokenizeSettings(size=16, augment="flip", shard_size=3, batch_size=2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("tokenizer"), TINY)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """7 pictures of varied sizes in 3 classes, and one broken file (image 3, dog/bad.jpg)."""
    root = tmp_path_factory.mktemp("data")
    sizes = [(20, 28), (40, 24), (17, 17), (33, 50), (16, 16), (26, 21), (64, 40)]
    names = ["cat/a.png", "cat/b.png", "dog/a.png", "dog/c.png", "eel/a.png", "eel/b/x.png", "eel/c.png"]
    for k, (name, size) in enumerate(zip(names, sizes)):
        write_photo(root / name, *size, seed=k)
    (root / "dog" / "bad.jpg").write_bytes(b"not a jpeg")
    return root


# ---- preprocessing -------------------------------------------------------------------------------
def test_adm_center_crop_halves_with_box_then_resizes_bicubic_and_crops():
    image = Image.fromarray(photo(150, 100, seed=3))
    crop = adm_center_crop(image, 24)
    # by hand: 100 >= 48, halve twice (100x150 -> 50x75 -> 25x37); then bicubic to 24x36 (round(37 * 24/25) = 36)
    half = image.resize((50, 75), Image.Resampling.BOX).resize((25, 37), Image.Resampling.BOX)
    expected = np.asarray(half.resize((24, 36), Image.Resampling.BICUBIC))[6:30, 0:24]
    assert crop.shape == (24, 24, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, expected)
    small = Image.fromarray(photo(10, 13, seed=4))  # smaller than the size: bicubic up, no halving
    assert np.array_equal(adm_center_crop(small, 20), np.asarray(small.resize((26, 20), Image.Resampling.BICUBIC))[:, 3:23])


def test_the_views_of_flip_and_tencrop():
    image = Image.fromarray(photo(40, 60, seed=5))
    crop = adm_center_crop(image, 16)
    assert np.array_equal(augmented_views(image, 16, "none"), crop[None])
    flip = augmented_views(image, 16, "flip")
    assert flip.shape == (2, 16, 16, 3) and np.array_equal(flip[0], crop) and np.array_equal(flip[1], crop[:, ::-1])
    ten = augmented_views(image, 16, "tencrop", 1.25)
    base = adm_center_crop(image, 20)  # int(16 * 1.25)
    mirror = base[:, ::-1]
    expected = [base[:16, :16], base[:16, 4:], base[4:, :16], base[4:, 4:], base[2:18, 2:18],
                mirror[:16, :16], mirror[:16, 4:], mirror[4:, :16], mirror[4:, 4:], mirror[2:18, 2:18]]
    assert ten.shape == (10, 16, 16, 3)
    assert all(np.array_equal(ten[k], expected[k]) for k in range(10))
    assert len({v.tobytes() for v in ten}) == 10
    assert augmented_views(image, 16, "tencrop").shape == (10, 16, 16, 3)  # crop range 1.1: from a 17-pixel crop


def test_settings_are_checked():
    for bad, message in [({"augment": "rotate"}, "unknown augmentation 'rotate'"), ({"crop_range": 0.9}, "crop_range must be between 1"),
                         ({"shard_size": 0}, "shard_size must be at least 1"), ({"workers": -1}, "workers must be 0 or more")]:
        with pytest.raises(WetokError, match=message):
            TokenizeSettings(**bad)


# ---- the run ---------------------------------------------------------------------------------------
def _arrays(out: Path) -> dict[str, np.ndarray]:
    s = open_shards(out)
    return {"tokens": s.tokens, "labels": s.labels, "image": s.image, "view": s.view}


def test_tokens_are_the_tokenizers_own_and_unreadable_images_are_listed(tmp_path: Path, model_dir: Path, data: Path):
    model = wetok.load(model_dir)
    out = tmp_path / "shards"
    result = tokenize(model, data, out, SMALL, info=ONE, progress=False)
    assert result.processed == 8 and result.shards_written == 3 and result.shards_skipped == 0
    assert [name for name, _ in result.skipped] == ["dog/bad.jpg"] and "not an image" in result.skipped[0][1]
    assert listing(out) == ["manifest.json", "shard-00000.npz", "shard-00001.npz", "shard-00002.npz", "tokenize.json"]
    s = open_shards(out)
    m = s.manifest
    assert m.files == ("cat/a.png", "cat/b.png", "dog/a.png", "dog/bad.jpg", "dog/c.png", "eel/a.png", "eel/b/x.png", "eel/c.png")
    assert m.file_labels == (0, 0, 1, 1, 1, 2, 2, 2) and m.classes == ("cat", "dog", "eel")
    assert m.unreadable == ("dog/bad.jpg",) and m.images == 7 and m.views == 2 and m.grid == (4, 4) and m.dtype == "uint8"
    assert [(e.rows, e.images) for e in m.shards] == [(6, 3), (4, 2), (4, 2)]
    assert m.tokenizer == {"architecture": TINY.architecture_hash(), "weights_file": model_dir.name, "preset": None,
                           "config": TINY.to_dict(), "weights_sha256": weights_fingerprint(wetok.load(model_dir))}
    assert s.image.tolist() == [i for i in (0, 1, 2, 4, 5, 6, 7) for _ in range(2)]
    assert s.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2] and s.view.tolist() == [0, 1] * 7
    # every row is the tokenizer's encoding of that view, each image encoded on its own
    for image in range(7):
        views = augmented_views(read_image(data / m.files[s.image[2 * image]]), 16, "flip")
        expected = model.encode(to_tensor(views)).numpy()
        assert np.array_equal(s.tokens[s.rows_of_image[image]], expected)
    assert len({t.tobytes() for t in s.tokens}) == 14  # varied tokens: the comparison above means something
    record = json.loads((out / "tokenize.json").read_text())
    assert record["size"] == 16 and record["augment"] == "flip" and record["files"] == 8 and record["shard_size"] == 3


def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(tmp_path: Path, model_dir: Path, data: Path, monkeypatch):
    model = wetok.load(model_dir)
    whole = tmp_path / "whole"
    tokenize(model, data, whole, SMALL, info=ONE, progress=False)
    calls = {"n": 0}
    real = tokenize_module.write_shard

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tokenize_module, "write_shard", stopping)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        tokenize(model, data, part, SMALL, info=ONE, progress=False)
    assert listing(part) == ["shard-00000.npz", "tokenize.json"]  # no manifest: not finished
    with pytest.raises(WetokError, match="an unfinished wetok tokenize run"):
        open_shards(part)
    (part / ".shard-00001.npz.x1y2.tmp").write_bytes(b"half")  # what a SIGKILL while writing leaves
    monkeypatch.setattr(tokenize_module, "write_shard", real)
    other_batch = TokenizeSettings(size=16, augment="flip", shard_size=3, batch_size=3)  # not a setting that must match
    result = tokenize(model, data, part, other_batch, info=ONE, progress=False)
    assert result.shards_written == 2 and result.shards_skipped == 1 and result.processed == 5
    assert listing(part) == listing(whole)
    a, b = _arrays(whole), _arrays(part)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert open_shards(part).manifest == open_shards(whole).manifest
    again = tokenize(model, data, part, SMALL, info=ONE, progress=False)  # complete: nothing to do
    assert again.shards_written == 0 and again.processed == 0 and again.manifest == open_shards(whole).manifest


def test_loader_processes_give_the_same_shards(tmp_path: Path, model_dir: Path, data: Path):
    model = wetok.load(model_dir)
    tokenize(model, data, tmp_path / "a", SMALL, info=ONE, progress=False)
    settings = TokenizeSettings(size=16, augment="flip", shard_size=3, batch_size=2, workers=1)
    tokenize(model, data, tmp_path / "b", settings, info=ONE, progress=False)
    a, b = _arrays(tmp_path / "a"), _arrays(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_ten_crop_shards_and_the_progress_bar(tmp_path: Path, model_dir: Path, data: Path, capsys):
    model = wetok.load(model_dir)
    settings = TokenizeSettings(size=16, augment="tencrop", crop_range=1.5, shard_size=4, batch_size=3)
    tokenize(model, data, tmp_path / "ten", settings, info=ONE, progress=True)
    bar = capsys.readouterr().err
    assert "tokenize: 100%" in bar and "8/8" in bar and "img/s" in bar
    s = open_shards(tmp_path / "ten")
    assert s.tokens.shape == (70, 4, 4, 2) and s.views == 10 and s.manifest.crop_range == 1.5
    assert s.view.tolist() == list(range(10)) * 7
    views = augmented_views(read_image(data / "eel" / "c.png"), 16, "tencrop", 1.5)
    assert np.array_equal(s.tokens[s.rows_of_image[6]], model.encode(to_tensor(views)).numpy())


def test_reruns_with_other_settings_are_refused(tmp_path: Path, model_dir: Path, data: Path):
    model = wetok.load(model_dir)
    out = tmp_path / "shards"
    tokenize(model, data, out, SMALL, info=ONE, progress=False)
    before = {p: p.read_bytes() for p in out.iterdir()}
    cases = [
        (model, TokenizeSettings(size=32, shard_size=3), data, "made with other settings (size); use the same settings to resume"),
        (model, TokenizeSettings(size=16, augment="none", shard_size=3), data, "other settings (augment, views)"),
        (model, TokenizeSettings(size=16, shard_size=4), data, "other settings (shard_size)"),
        (wetok.load(make_model_dir(tmp_path / "retrained", TINY, seed=1)), SMALL, data, "other settings (tokenizer)"),
    ]
    for other_model, settings, folder, message in cases:
        with pytest.raises(WetokError, match=message.replace("(", r"\(").replace(")", r"\)")):
            tokenize(other_model, folder, out, settings, info=ONE, progress=False)
    write_photo(data / "cat" / "new.png", 20, 20)
    try:
        with pytest.raises(WetokError, match=r"other settings \(the file list\)"):
            tokenize(model, data, out, SMALL, info=ONE, progress=False)
    finally:
        (data / "cat" / "new.png").unlink()
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_outputs_and_sizes_that_cannot_work_are_refused(tmp_path: Path, model_dir: Path, data: Path):
    model = wetok.load(model_dir)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(WetokError, match="a folder that holds other files"):
        tokenize(model, data, tmp_path / "busy", SMALL, info=ONE, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(WetokError, match="exists and is not a folder"):
        tokenize(model, data, tmp_path / "file", SMALL, info=ONE, progress=False)
    with pytest.raises(WetokError, match="--size 18 is not a multiple of the tokenizer's downsample factor 4"):
        tokenize(model, data, tmp_path / "new", TokenizeSettings(size=18), info=ONE, progress=False)
    assert not (tmp_path / "new").exists()
    broken = tmp_path / "broken"
    (broken / "x").mkdir(parents=True)
    (broken / "x" / "bad.png").write_bytes(b"nope")
    with pytest.raises(WetokError, match="none of the 1 images could be read; no manifest written"):
        tokenize(model, broken, tmp_path / "none", SMALL, info=ONE, progress=False)


def test_the_precision_is_recorded_the_manifest_fingerprints_float32_and_a_rerun_must_match(
    tmp_path: Path, model_dir: Path, data: Path
):
    fast = dataclasses.replace(SMALL, precision="bf16")
    out = tmp_path / "bf16"
    tokenize(wetok.load(model_dir), data, out, fast, info=ONE, progress=False)
    assert json.loads((out / "tokenize.json").read_text())["precision"] == "bf16"
    # the manifest names the float32 weights, so generator training checks the tokenizer it loads
    assert open_shards(out).manifest.tokenizer["weights_sha256"] == weights_fingerprint(wetok.load(model_dir))
    exact = tmp_path / "fp32"
    tokenize(wetok.load(model_dir), data, exact, SMALL, info=ONE, progress=False)
    agree = (open_shards(out).tokens == open_shards(exact).tokens).mean()
    assert 0.8 <= agree  # bf16 differs from float32 only where a latent sits near zero
    with pytest.raises(WetokError, match="precision"):
        tokenize(wetok.load(model_dir), data, out, SMALL, info=ONE, progress=False)
    with pytest.raises(WetokError, match="precision must be one of"):
        TokenizeSettings(precision="fp8")
