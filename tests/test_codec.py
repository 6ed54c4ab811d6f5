"""codec: image sizing, encoding to token sets, decoding them back with the model a file names, the seeding rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import CASES, TINY, TINY_GD, make_model_dir, photo, require_reference
from wetok.codec import Codec, pack
from wetok.errors import WetokError
from wetok.images import CropBox, resize_shorter_center_crop, save_image, stretch_resize
from wetok.tokenizer import seeded_noise
from wetok.tokens import write_tokens

RECON_TOL = 1e-4


@pytest.mark.parametrize("case", CASES)
def test_fixture_token_files_decode_to_the_fixture_reconstruction(case):
    ref = require_reference()
    exp = torch.load(ref / f"{case}_expected.pt", weights_only=True)
    model, tokens = Codec().open_tokens(ref / f"{case}_tokens.json")
    noise = exp["ema_noise"][0:1] if "ema_noise" in exp else None
    pictures = wetok.crop(model.decode(tokens.tokens, noise=noise), tokens.crop)
    want = exp["ema_recon"][0:1].clamp(-1, 1)
    assert pictures.shape == want.shape
    assert (pictures - want).abs().max().item() < RECON_TOL


def test_gd_decoding_without_the_fixture_noise_differs_and_seed_is_reproducible():
    ref = require_reference()
    exp = torch.load(ref / "tiny_gd_d32_expected.pt", weights_only=True)
    model, tokens = Codec().open_tokens(ref / "tiny_gd_d32_tokens.json")
    a = Codec(model, seed=1).decode(tokens)
    b = Codec(model, seed=1).decode(tokens)
    c = Codec(model, seed=2).decode(tokens)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert (a - exp["ema_recon"][0:1].clamp(-1, 1)).abs().max() > 1e-3


def _sized(size: int, resize: str = "crop", f: int = 4) -> Codec:
    config = TINY if f == 4 else wetok.TokenizerConfig(channels=32, channel_mult=(1,) * 5, num_res_blocks=1, latent_channels=8, groups=2)
    return Codec(wetok.Tokenizer(config), size=size, resize=resize)  # type: ignore[arg-type]


def test_size_policies():
    image = Image.fromarray(photo(50, 80))
    crop = _sized(32, "crop").prepare(image, "x")
    want = torch.from_numpy(resize_shorter_center_crop(np.asarray(image), 32)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(crop.pixels[0], want) and crop.crop == CropBox(0, 0, 32, 32) and crop.original_size == (50, 80)
    stretch = _sized(32, "stretch").prepare(image, "x")
    want = torch.from_numpy(np.array(stretch_resize(np.asarray(image), 32))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(stretch.pixels[0], want)
    own = _sized(0, f=16).prepare(image, "x")
    assert own.shape == (64, 80) and own.crop == CropBox(7, 0, 50, 80)
    odd = _sized(30).prepare(image, "x")
    assert odd.shape == (32, 32) and odd.crop == CropBox(1, 1, 30, 30)


def test_image_smaller_than_one_token_is_refused():
    with pytest.raises(WetokError, match=r"tiny.png: image 3x5 is smaller than one token \(4x4 pixels\)"):
        _sized(0).prepare(Image.fromarray(photo(5, 3)), "tiny.png")
    with pytest.raises(WetokError, match="--size 2 is smaller than one token"):
        _sized(2).prepare(Image.fromarray(photo(50, 50)), "x")


@pytest.mark.parametrize("config", [TINY, TINY_GD], ids=["plain", "generative"])
def test_own_resolution_roundtrip_matches_reconstruct(tmp_path, config):
    directory = make_model_dir(tmp_path / "m", config)
    codec = Codec(wetok.load(directory), size=0)
    image = codec.prepare(Image.fromarray(photo(21, 30)), "x")
    (tokens,) = codec.encode_prepared([image])
    noise = seeded_noise((config.latent_channels, *tokens.grid), [0]) if config.generative else None
    pictures = codec.decode(tokens)
    assert pictures.shape == (1, 3, 21, 30)
    original = image.pixels[:, :, image.crop.top : image.crop.top + 21, image.crop.left : image.crop.left + 30]
    direct = codec.model.reconstruct(original, noise=noise)
    assert (pictures - direct).abs().max().item() < 1e-5


def test_decoding_with_another_architecture_is_a_clear_error(tmp_path):
    one = make_model_dir(tmp_path / "one", TINY)
    other = make_model_dir(tmp_path / "other", TINY_GD)
    tokens = Codec(wetok.load(one), size=0).encode(Image.fromarray(photo(16, 16)))
    path = write_tokens(tmp_path / "t.wtok", tokens)
    with pytest.raises(WetokError, match=r"t.wtok: tokens were made by one \(architecture [0-9a-f]{16}\), but the model is"):
        Codec(wetok.load(other)).open_tokens(path)
    # Without an override, the weights named in the file are found beside it.
    model, _ = Codec().open_tokens(path)
    assert model.identity.weights_file == "one"
    (tmp_path / "one").rename(tmp_path / "moved")
    with pytest.raises(WetokError, match="made with weights 'one'.*not found"):
        Codec().open_tokens(path)


def test_seeding_rule_image_i_of_a_run_gets_seed_plus_i(tmp_path):
    """Whatever the batching: image i of a decode gets noise from seed + i."""
    model = wetok.load(make_model_dir(tmp_path / "gd", TINY_GD))
    codec = Codec(model, size=16, seed=7)
    sets = [codec.encode(Image.fromarray(photo(16, 16, seed=k))) for k in range(3)]
    together = codec.decode(pack(sets))
    for i, one in enumerate(sets):
        alone = Codec(model, size=16, seed=7 + i).decode(one)
        assert (together[i : i + 1] - alone).abs().max() < 1e-5  # batched convolutions round a little differently
        assert torch.equal(codec.decode(one, indices=[i]), alone)
    direct = model.decode(pack(sets).tokens, seed=7)
    assert torch.equal(together, direct)
    assert (together[0] - Codec(model, size=16, seed=7).decode(sets[1])[0]).abs().max() > 1e-3


def test_encoding_needs_a_model():
    with pytest.raises(WetokError, match="encoding needs a model"):
        Codec().encode(Image.fromarray(photo(16, 16)))


def test_save_image_refuses_unknown_suffix_and_writes_atomically(tmp_path):
    pixels = torch.zeros(1, 3, 8, 8)
    with pytest.raises(WetokError, match=r"out.xyz: cannot tell the image format"):
        save_image(tmp_path / "out.xyz", pixels)
    save_image(tmp_path / "out.jpg", pixels)
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]
