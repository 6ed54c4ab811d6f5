"""Image conversions and file reading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from wetok.images import read_image, to_pil, to_tensor, to_uint8


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
