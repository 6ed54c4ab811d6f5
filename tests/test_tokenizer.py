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


# ---- the fast path (wetok.execution) -------------------------------------------------------------
def chelsea(size: int = 256) -> torch.Tensor:
    """The bundled photo, its central size x size crop, as a (1, 3, size, size) image in [-1, 1]."""
    from pathlib import Path

    from wetok.images import center_crop, to_tensor

    photo = np.asarray(Image.open(Path(wetok.__file__).parent / "assets" / "chelsea.png").convert("RGB"))
    return to_tensor(np.ascontiguousarray(center_crop(photo, size, size)))


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * np.log10(4.0 / ((a - b) ** 2).mean().item())


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_sixteen_bit_weights_are_converted_once_and_channels_last(precision, dtype):
    torch.manual_seed(0)
    model = Tokenizer(SMALL).eval().set_execution(precision)
    assert model.dtype == dtype and model.execution.precision == precision
    assert all(p.dtype == dtype for p in model.parameters())
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    tokens = model.encode(images)
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 8, 8, 2)
    assert model.encode_latent(images).dtype == dtype
    out = model.decode(tokens)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 32)  # pixels rounded from float32
    assert model.reconstruct(torch.rand(1, 3, 30, 33) * 2 - 1).dtype == torch.float32


def test_fast_path_meets_the_quality_targets_on_a_real_photo_with_the_default_model():
    """The trained default model on the bundled photo: bf16's token bits equal float32's for at
    least 99.5% of bits, and its reconstruction within 0.05 dB PSNR of float32's."""
    image = chelsea()
    exact, fast = wetok.load(None), wetok.load(None, precision="bf16")
    tokens, fast_tokens = exact.encode(image), fast.encode(image)
    bits = exact.bits_per_group
    equal_bits = sum(((tokens >> i) & 1 == (fast_tokens >> i) & 1).float().mean().item() for i in range(bits)) / bits
    assert equal_bits >= 0.995
    assert (tokens == fast_tokens).float().mean().item() >= 0.95  # group tokens: all 8 bits equal
    loss = psnr_db(exact.decode(tokens), image) - psnr_db(fast.decode(fast_tokens), image)
    assert abs(loss) <= 0.05


def test_float32_channels_last_gives_the_fixture_tokens(reference, expected):
    """channels_last float32 convolutions sum in another order: the tokens of the fixture images
    stay the original's and reconstructions stay within the reference tolerance."""
    exp = expected("tiny_d16")
    plain = wetok.load(reference / "tiny_d16.ckpt", config=reference / "tiny_d16.yaml")
    nhwc = wetok.load(reference / "tiny_d16.ckpt", config=reference / "tiny_d16.yaml", channels_last=True)
    assert nhwc.execution.memory_format == torch.channels_last and nhwc.dtype == torch.float32
    tokens = nhwc.encode(exp["image"])
    assert (tokens.flatten() == exp["ema_indices"]).float().mean().item() >= 0.999
    assert (nhwc.decode(tokens) - plain.decode(tokens)).abs().max().item() < 1e-4


def test_generative_decoder_runs_in_bfloat16_with_seeded_noise(gd_model):
    torch.manual_seed(1)
    fast = Tokenizer(SMALL_GD).eval()
    fast.load_state_dict(gd_model.state_dict())
    fast.set_execution("bf16")
    tokens = gd_model.encode(torch.rand(1, 3, 32, 32) * 2 - 1)
    a, b = fast.decode(tokens, seed=3), fast.decode(tokens, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert (a - gd_model.decode(tokens, seed=3)).abs().mean().item() < 0.05


def test_load_takes_the_precision_and_refuses_a_wrong_one_before_reading(tmp_path):
    model = wetok.load(None, precision="fp16")
    assert model.dtype == torch.float16 and model.execution.precision == "fp16"
    with pytest.raises(wetok.WetokError, match="precision must be one of"):
        wetok.load(tmp_path / "missing", precision="int8")  # the precision, not the missing file


def test_compiled_encoder_gives_the_eager_tokens():
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    torch.manual_seed(0)
    config = TokenizerConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2, norm_groups=4)
    eager = Tokenizer(config).eval()
    compiled = Tokenizer(config).eval()
    compiled.load_state_dict(eager.state_dict())
    compiled.set_execution("fp32", compile=True)
    assert compiled.execution.compile and not compiled.execution.exact
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert (compiled.encode(images) == eager.encode(images)).float().mean().item() >= 0.99
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # saving is unchanged
