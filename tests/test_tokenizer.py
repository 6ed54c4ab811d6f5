"""Tokenizer API: shapes, padding for any size, generative decoding, helpers, conveniences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from wetok import Tokenizer, TokenizerConfig, crop, pad_to_multiple

SMALL = TokenizerConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=16, groups=2)
SMALL_GD = TokenizerConfig(
    channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=16, groups=2, generative=True
)


@pytest.fixture(scope="module")
def model() -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(SMALL).eval()


@pytest.fixture(scope="module")
def gd_model() -> Tokenizer:
    torch.manual_seed(1)
    return Tokenizer(SMALL_GD).eval()


def test_shapes_and_dtypes(model):
    images = torch.rand(3, 3, 32, 48) * 2 - 1
    tokens = model.encode(images)
    assert tokens.shape == (3, 8, 12, 2) and tokens.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 256
    out = model.decode(tokens)
    assert out.shape == (3, 3, 32, 48) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1


def test_facts(model):
    assert model.downsample == 4 and model.bits_per_token == 16 and model.groups == 2
    assert model.token_grid(30, 33) == (8, 9)
    assert model.tokens_per_image(256, 256) == 64 * 64 * 2
    assert model.bits_per_pixel(256, 256) == 1.0
    assert model.compression_ratio(256, 256) == 24.0
    d8 = wetok.PRESETS["imagenet-d8"]
    assert d8.compression_ratio() == 48.0 and d8.latent_channels == 32


def test_decode_of_encode_equals_forward_reconstruction(model):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = model(images)
    assert torch.allclose(model.decode(model.encode(images)), out.reconstruction.clamp(-1, 1), atol=1e-6)
    assert torch.equal(out.quantizer.tokens, model.encode(images))


def test_encode_rejects_sizes_not_multiple_of_f(model):
    with pytest.raises(wetok.WetokError, match="not a multiple of the downsample factor 4"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(wetok.WetokError, match=r"shape \(B, 3, H, W\)"):
        model.encode(torch.zeros(3, 32, 32))
    with pytest.raises(wetok.WetokError, match="float"):
        model.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_pad_and_crop_round_trip():
    x = torch.arange(2 * 3 * 7 * 10, dtype=torch.float32).reshape(2, 3, 7, 10)
    padded, box = pad_to_multiple(x, 4)
    assert padded.shape == (2, 3, 8, 12)
    assert (box.top, box.left, box.height, box.width) == (0, 1, 7, 10)
    assert torch.equal(crop(padded, box), x)
    assert padded[..., :, 0].abs().sum() == 0  # left padding is zeros
    same, box2 = pad_to_multiple(x[..., :4, :8], 4)
    assert same.shape == (2, 3, 4, 8) and box2.top == 0 and box2.left == 0


@pytest.mark.parametrize("size", [(17, 23), (31, 8), (5, 5)])
def test_reconstruct_any_size(model, size):
    h, w = size
    images = torch.rand(1, 3, h, w) * 2 - 1
    out = model.reconstruct(images)
    assert out.shape == images.shape
    padded, box = pad_to_multiple(images, 4)
    manual = crop(model.decode(model.encode(padded)), box)
    assert torch.allclose(out, manual, atol=1e-6)


def test_generative_decoder_noise_and_generator(gd_model):
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = gd_model.encode(images)
    a = gd_model.decode(tokens, generator=torch.Generator().manual_seed(7))
    b = gd_model.decode(tokens, generator=torch.Generator().manual_seed(7))
    c = gd_model.decode(tokens, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(gd_model.decode(tokens, noise=noise), a)
    with pytest.raises(wetok.WetokError, match="noise must have the latent's shape"):
        gd_model.decode(tokens, noise=torch.randn(2, 16, 2, 2))


def test_plain_decoder_refuses_noise(model):
    tokens = torch.zeros(1, 2, 2, 2, dtype=torch.long)
    with pytest.raises(wetok.WetokError, match="takes no noise"):
        model.decode(tokens, noise=torch.randn(1, 16, 2, 2))


def test_decode_rejects_bad_tokens(model):
    with pytest.raises(wetok.WetokError, match="out of range"):
        model.decode(torch.full((1, 2, 2, 2), 300))
    with pytest.raises(wetok.WetokError, match="shape"):
        model.decode(torch.zeros(1, 2, 2, 5, dtype=torch.long))


def test_pil_and_uint8_conveniences(model):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (19, 26, 3), dtype=np.uint8)
    out = model.reconstruct_image(Image.fromarray(array))
    assert isinstance(out, Image.Image) and out.size == (26, 19) and out.mode == "RGB"
    assert np.array_equal(np.asarray(model.reconstruct_image(array)), np.asarray(out))
    tokens = model.encode_image(array[:16, :24])
    assert tokens.shape == (1, 4, 6, 2)
    images = model.decode_to_images(tokens)
    assert len(images) == 1 and images[0].size == (24, 16)


def test_meta_device_construction():
    with torch.device("meta"):
        big = Tokenizer(wetok.PRESETS["general-cr768"])
    assert all(p.is_meta for p in big.parameters())
    assert sum(p.numel() for p in big.parameters()) == 720160544 + 953518339


def test_norm_groups_reach_every_groupnorm_and_survive_save_and_load(tmp_path):
    base = wetok.TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2)
    torch.manual_seed(0)
    model = wetok.Tokenizer(dataclasses.replace(base, norm_groups=8)).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {8}
    reference = wetok.Tokenizer(base).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.items()}
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    again = wetok.load(model.save(tmp_path / "m"))
    assert again.config.norm_groups == 8
    assert torch.equal(again.reconstruct(images), model.reconstruct(images))
