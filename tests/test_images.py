"""wetok.images: conversions, reading real-world files (every mode ends as 8-bit RGB with the
values a viewer would show), listing, and the resize/crop protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from wetok.errors import WetokError
from wetok.images import (
    center_crop,
    decode_image,
    read_image,
    resize_shorter_center_crop,
    resize_shorter_side,
    stretch_resize,
    to_pil,
    to_tensor,
    to_uint8,
    to_uint8_tensor,
)


def test_tensor_round_trip_is_exact():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    tensor = to_tensor(array)
    assert tensor.shape == (2, 3, 9, 11) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(to_uint8(tensor), array)
    assert np.array_equal(np.asarray(to_pil(tensor)[1]), array[1])


def test_modes_are_converted(tmp_path):
    gray = Image.fromarray(np.full((4, 5), 77, np.uint8))
    assert to_tensor(gray).shape == (1, 3, 4, 5)
    rgba = Image.new("RGBA", (3, 3), (0, 0, 0, 0))  # fully transparent -> white
    assert to_uint8(to_tensor(rgba))[0, 0, 0].tolist() == [255, 255, 255]
    sixteen = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    sixteen.save(tmp_path / "s.png")
    assert np.asarray(read_image(tmp_path / "s.png"))[0, 0].tolist() == [255, 255, 255]
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").mode == "RGB"
    Image.new("P", (4, 4)).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").mode == "RGB"


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (6, 4), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").size == (4, 6)


def test_decompression_bomb_guard(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(wetok.WetokError, match="decompression-bomb limit of 10000"):
        read_image(tmp_path / "big.png", max_pixels=10_000)
    assert read_image(tmp_path / "big.png", max_pixels=None).size == (200, 100)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"not an image at all", "not an image")],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(wetok.WetokError, match=message):
        read_image(path)


def test_truncated_image(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(wetok.WetokError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.png")


def test_missing_file(tmp_path):
    with pytest.raises(wetok.WetokError, match="no such file"):
        read_image(tmp_path / "absent.png")


def test_list_images_recursive_sorted_hidden_skipped(tmp_path):
    from wetok.images import list_images

    for rel in ["b/2.PNG", "a.jpg", "b/1.webp", ".hidden/x.png", "c/.y.png", "notes.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.jpg", "b/1.webp", "b/2.PNG"]
    assert list_images(tmp_path / "c") == []
    with pytest.raises(wetok.WetokError, match="no such folder"):
        list_images(tmp_path / "absent")
    with pytest.raises(wetok.WetokError, match="not a folder"):
        list_images(tmp_path / "a.jpg")


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


def test_shorter_side_and_rounding():
    image = np.zeros((300, 451, 3), np.uint8)
    out = resize_shorter_side(image, 256)
    assert out.shape == (256, round(451 * 256 / 300), 3)
    assert resize_shorter_center_crop(image, 256).shape == (256, 256, 3)


def test_matches_opencv_bilinear_exactly():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    out = resize_shorter_center_crop(image, 64)
    ref = cv2.resize(image, (64, round(120 * 64 / 90)), interpolation=cv2.INTER_LINEAR)
    top = (ref.shape[0] - 64) // 2
    assert np.array_equal(out, ref[top : top + 64])


def test_identity_when_already_sized():
    image = np.arange(64 * 80 * 3, dtype=np.uint32).astype(np.uint8).reshape(64, 80, 3)
    assert np.array_equal(resize_shorter_side(image, 64), image)
    assert np.array_equal(center_crop(image, 64, 64), image[:, 8:72])


def test_stretch_and_crop_errors():
    assert stretch_resize(np.zeros((10, 30, 3), np.uint8), 16).shape == (16, 16, 3)
    with pytest.raises(wetok.WetokError, match="cannot crop"):
        center_crop(np.zeros((10, 10, 3), np.uint8), 12, 12)


def test_decode_image_reads_bytes_like_files(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    assert np.array_equal(np.asarray(decode_image(path.read_bytes(), "x")), np.asarray(read_image(path)))
    with pytest.raises(WetokError, match="member.jpg: not an image"):
        decode_image(b"not an image", "member.jpg")


def test_uint8_modes_round_or_truncate():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.004, 0.999, 1.0, 2.0]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    assert to_uint8_tensor(x)[0, 0, :, 0].tolist() == [0, 0, 128, 128, 255, 255, 255]
    assert to_uint8_tensor(x, "truncate")[0, 0, :, 0].tolist() == [0, 0, 127, 128, 254, 255, 255]
    assert np.array_equal(to_uint8(x), to_uint8_tensor(x).numpy())
