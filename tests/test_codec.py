"""codec: model choice, image sizing, encoding to token sets and decoding them back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from cli_helpers import CASES, TINY, TINY_GD, make_model_dir, photo, require_reference
from wetok.codec import (
    ModelCache,
    ModelChoice,
    SizePolicy,
    decode_tokens,
    encode_images,
    image_noise,
    load_model,
    open_tokens,
    prepare_image,
    save_image,
)
from wetok.errors import WetokError
from wetok.tokenizer import CropBox
from wetok.tokens import write_tokens
from wetok.transforms import resize_shorter_center_crop, stretch_resize

RECON_TOL = 1e-4


@pytest.mark.parametrize("case", CASES)
def test_fixture_token_files_decode_to_the_fixture_reconstruction(case):
    ref = require_reference()
    exp = torch.load(ref / f"{case}_expected.pt", weights_only=True)
    loaded, tokens = open_tokens(ref / f"{case}_tokens.json", ModelChoice(), ModelCache())
    noise = exp["ema_noise"][0:1] if "ema_noise" in exp else None
    pictures = decode_tokens(loaded.model, tokens, noise=noise)
    want = exp["ema_recon"][0:1].clamp(-1, 1)
    assert pictures.shape == want.shape
    assert (pictures - want).abs().max().item() < RECON_TOL


def test_gd_decoding_without_the_fixture_noise_differs_and_seed_is_reproducible():
    ref = require_reference()
    exp = torch.load(ref / "tiny_gd_d32_expected.pt", weights_only=True)
    loaded, tokens = open_tokens(ref / "tiny_gd_d32_tokens.json", ModelChoice(), ModelCache())
    a = decode_tokens(loaded.model, tokens, seed=1)
    b = decode_tokens(loaded.model, tokens, seed=1)
    c = decode_tokens(loaded.model, tokens, seed=2)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert (a - exp["ema_recon"][0:1].clamp(-1, 1)).abs().max() > 1e-3


def test_size_policies():
    image = Image.fromarray(photo(50, 80))
    crop = prepare_image(image, SizePolicy(32, "crop"), 4, "x")
    want = torch.from_numpy(resize_shorter_center_crop(np.asarray(image), 32)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(crop.pixels[0], want) and crop.crop == CropBox(0, 0, 32, 32) and crop.original_size == (50, 80)
    stretch = prepare_image(image, SizePolicy(32, "stretch"), 4, "x")
    want = torch.from_numpy(np.array(stretch_resize(np.asarray(image), 32))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(stretch.pixels[0], want)
    own = prepare_image(image, SizePolicy(0), 16, "x")
    assert own.shape == (64, 80) and own.crop == CropBox(7, 0, 50, 80)
    odd = prepare_image(image, SizePolicy(30), 4, "x")
    assert odd.shape == (32, 32) and odd.crop == CropBox(1, 1, 30, 30)


def test_image_smaller_than_one_token_is_refused():
    with pytest.raises(WetokError, match=r"tiny.png: image 3x5 is smaller than one token \(4x4 pixels\)"):
        prepare_image(Image.fromarray(photo(5, 3)), SizePolicy(0), 4, "tiny.png")
    with pytest.raises(WetokError, match="--size 2 is smaller than one token"):
        prepare_image(Image.fromarray(photo(50, 50)), SizePolicy(2), 4, "x")


@pytest.mark.parametrize("config", [TINY, TINY_GD], ids=["plain", "generative"])
def test_own_resolution_roundtrip_matches_reconstruct(tmp_path, config):
    directory = make_model_dir(tmp_path / "m", config)
    loaded = load_model(ModelChoice(ckpt=str(directory)))
    image = prepare_image(Image.fromarray(photo(21, 30)), SizePolicy(0), loaded.model.downsample, "x")
    (tokens,) = encode_images(loaded, [image], SizePolicy(0))
    noise = image_noise(loaded.model, tokens.grid, 0)
    pictures = decode_tokens(loaded.model, tokens, seed=0)
    assert pictures.shape == (1, 3, 21, 30)
    original = image.pixels[:, :, image.crop.top : image.crop.top + 21, image.crop.left : image.crop.left + 30]
    direct = loaded.model.reconstruct(original, noise=noise)
    assert (pictures - direct).abs().max().item() < 1e-5


def test_decoding_with_another_architecture_is_a_clear_error(tmp_path):
    one = make_model_dir(tmp_path / "one", TINY)
    other = make_model_dir(tmp_path / "other", TINY_GD)
    loaded = load_model(ModelChoice(ckpt=str(one)))
    image = prepare_image(Image.fromarray(photo(16, 16)), SizePolicy(0), 4, "x")
    (tokens,) = encode_images(loaded, [image], SizePolicy(0))
    path = write_tokens(tmp_path / "t.wtok", tokens)
    with pytest.raises(WetokError, match=r"t.wtok: tokens were made by one \(architecture [0-9a-f]{16}\), but the model is"):
        open_tokens(path, ModelChoice(ckpt=str(other)), ModelCache())
    # Without an override, the weights named in the file are found beside it.
    (tmp_path / "one").rename(tmp_path / "moved")
    with pytest.raises(WetokError, match="made with weights 'one'.*not found"):
        open_tokens(path, ModelChoice(), ModelCache())


def test_no_model_and_no_default_model_says_so(no_default_model):
    assert not wetok.default_model_available()
    with pytest.raises(WetokError, match="no default model yet: pass --preset NAME"):
        load_model(ModelChoice())


def test_model_choice_conflicts():
    with pytest.raises(WetokError, match="either --config or --preset"):
        load_model(ModelChoice(ckpt="x", config="y.yaml", preset="imagenet-d8"))
    with pytest.raises(WetokError, match="give the checkpoint with --ckpt"):
        load_model(ModelChoice(config="y.yaml"))
    with pytest.raises(WetokError, match="unknown preset 'nope'"):
        load_model(ModelChoice(preset="nope"))


def test_save_image_refuses_unknown_suffix_and_writes_atomically(tmp_path):
    pixels = torch.zeros(1, 3, 8, 8)
    with pytest.raises(WetokError, match=r"out.xyz: cannot tell the image format"):
        save_image(tmp_path / "out.xyz", pixels)
    save_image(tmp_path / "out.jpg", pixels)
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]
