"""Real-world image files through `wetok.images.read_image`: every mode ends as 8-bit RGB with
the values a viewer would show. (Kept apart from tests/test_images.py to merge cleanly.)"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wetok.errors import WetokError
from wetok.images import read_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
GRAY = RGB[..., 0]


@pytest.mark.parametrize(
    "name, image, want",
    [
        ("gray.png", Image.fromarray(GRAY), np.repeat(GRAY[..., None], 3, 2)),
        ("bits.png", Image.fromarray(GRAY > 127), np.repeat(np.where(GRAY > 127, 255, 0)[..., None], 3, 2)),
        ("sixteen.png", Image.fromarray(GRAY.astype(np.uint16) * 257), np.repeat(GRAY[..., None], 3, 2)),
        ("float.tiff", Image.fromarray(GRAY.astype(np.float32) / 255), np.repeat(GRAY[..., None], 3, 2)),
        ("int32.tiff", Image.fromarray(GRAY.astype(np.int32)), np.repeat(GRAY[..., None], 3, 2)),
        ("opaque.png", Image.fromarray(np.dstack([RGB, np.full(GRAY.shape, 255, np.uint8)])), RGB),
        ("clear.png", Image.fromarray(np.dstack([RGB, np.zeros(GRAY.shape, np.uint8)])), np.full_like(RGB, 255)),
        ("rgb.bmp", Image.fromarray(RGB), RGB),
        ("rgb.tiff", Image.fromarray(RGB), RGB),
        ("rgb.webp", Image.fromarray(RGB), None),
    ],
)
def test_modes_become_8bit_rgb(tmp_path, name, image, want):
    path = tmp_path / name
    image.save(path, **({"lossless": True} if name.endswith(".webp") else {}))
    out = read_image(path)
    assert out.mode == "RGB" and out.size == (9, 6)
    if want is not None:
        assert np.abs(np.asarray(out).astype(int) - want.astype(int)).max() <= 1
    else:
        assert np.array_equal(np.asarray(out), RGB)


def test_exif_rotation_turns_the_picture(tmp_path):
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image.save(tmp_path / "r.png", exif=exif)
    out = np.asarray(read_image(tmp_path / "r.png"))
    assert np.array_equal(out, np.rot90(RGB, k=-1))


def test_bomb_message_names_the_command_line_override(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "b.png")
    with pytest.raises(WetokError, match=r"b.png: 9x6 = 54 pixels exceeds .* --max-pixels 0"):
        read_image(tmp_path / "b.png", max_pixels=50)
    assert read_image(tmp_path / "b.png", max_pixels=None).size == (9, 6)
