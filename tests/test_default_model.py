"""The default model shipped in the package: what `wetok.load()` and the CLI use without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import wetok
from support import cli
from wetok.images import read_image, resize_shorter_center_crop, to_tensor, to_uint8
from wetok.metrics import psnr, ssim
from wetok.weights import DEFAULT_MODEL_DIR

ASSET = DEFAULT_MODEL_DIR.parent / "assets" / "chelsea.png"
# Measured on the shipped weights (chelsea is held out: never trained on); a retrained model
# updates these together with its model card.
CHELSEA_PSNR = 30.064
CHELSEA_SSIM = 0.8521


@pytest.fixture(scope="module")
def model() -> wetok.Tokenizer:
    return wetok.load()


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return resize_shorter_center_crop(np.asarray(read_image(ASSET)), 256)


def test_the_package_carries_it():
    assert wetok.default_model_available()
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size <= 30e6


def test_architecture_is_d8_at_one_bit_per_pixel_or_less(model):
    assert model.downsample == 8 and model.config.latent_channels in (32, 64)
    assert model.bits_per_pixel(256, 256) <= 1.0
    stored = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["config"]
    assert model.config.to_dict() == stored
    assert model.config.architecture_hash() in (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()


def test_held_out_photo_quality(model, chelsea):
    with torch.no_grad():
        recon = to_uint8(model.reconstruct(to_tensor(chelsea)))
    assert psnr(chelsea[None], recon)[0] == pytest.approx(CHELSEA_PSNR, abs=0.02)
    assert ssim(chelsea[None], recon)[0] == pytest.approx(CHELSEA_SSIM, abs=0.002)


def test_cli_without_a_model_uses_it(tmp_path, capsys, model, chelsea):
    from PIL import Image

    Image.fromarray(chelsea).save(tmp_path / "cat.png")
    code, _, err = cli(capsys, "encode", tmp_path / "cat.png", "-o", tmp_path / "cat.wtok")
    assert code == 0, err
    code, _, err = cli(capsys, "decode", tmp_path / "cat.wtok", "-o", tmp_path / "back.png")
    assert code == 0, err
    back = np.asarray(Image.open(tmp_path / "back.png"))
    with torch.no_grad():
        direct = to_uint8(model.reconstruct(to_tensor(chelsea)))[0]
    assert np.array_equal(back, direct)
    # 32 x 32 positions x 64 bits = 8192 bytes of tokens after a header of at most 128 bytes
    size = (tmp_path / "cat.wtok").stat().st_size
    assert 32 * 32 * model.config.latent_channels // 8 < size <= 32 * 32 * model.config.latent_channels // 8 + 128
