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


# ---- broken metadata and failing decoders (issue 17: #1, #2) ----------------------------------------
def _exif(entries: list[tuple[int, int, int, bytes]], *, header: bytes = b"II*\x00") -> bytes:
    """An EXIF block (little-endian TIFF, one IFD) of raw (tag, type, count, 4-byte value) entries:
    whatever types the entries claim, as broken camera and phone files carry them."""
    import struct

    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHL", t, ty, c) + v for t, ty, c, v in entries)
    return b"Exif\x00\x00" + header + struct.pack("<L", 8) + ifd + struct.pack("<L", 0)


def _short(value: int) -> bytes:
    import struct

    return struct.pack("<HH", value, 0)


ORIENT_6 = (0x0112, 3, 1, _short(6))
BROKEN_EXIF = {
    # wrongly typed resolution entries (text where numbers belong): Pillow's exif_transpose fails on them
    "xres-text": [ORIENT_6, (0x011A, 2, 4, b"abc\0")],
    "yres-text": [ORIENT_6, (0x011B, 2, 4, b"72\0\0")],
    "unit-text": [ORIENT_6, (0x0128, 2, 4, b"in\0\0")],
    "unit-long-text": [(0x0128, 2, 4, b"cm\0\0"), ORIENT_6, (0x011A, 2, 2, b"x\0\0\0")],
    "xres-offset-outside": [ORIENT_6, (0x011A, 5, 1, (99999).to_bytes(4, "little"))],  # a rational past the block's end
    "unit-count-huge": [ORIENT_6, (0x0128, 3, 4000, b"\x00\x01\x00\x00")],
    "unknown-type": [ORIENT_6, (0x011A, 99, 1, b"\x01\x00\x00\x00")],
}


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("case", sorted(BROKEN_EXIF))
def test_broken_exif_beside_the_orientation_still_turns_the_picture(tmp_path, suffix, case):
    path = tmp_path / f"{case}{suffix}"
    Image.fromarray(RGB).save(path, exif=_exif(BROKEN_EXIF[case]), **({"lossless": True} if suffix == ".webp" else {}))
    out = np.asarray(read_image(path))
    assert out.shape == (9, 6, 3)  # orientation 6 applied from the raw tag: 9 wide, 6 high -> 6 wide, 9 high
    if suffix != ".jpg":
        assert np.array_equal(out, np.rot90(RGB, k=-1))


@pytest.mark.parametrize(
    "orientation_entry",
    [(0x0112, 2, 4, b"6\0\0\0"), (0x0112, 3, 1, _short(0)), (0x0112, 3, 1, _short(9)), (0x0112, 3, 1, _short(60000)),
     (0x0112, 5, 1, b"\x00\x00\x00\x00"), (0x0112, 3, 70000, b"\x08\x00\x00\x00")],
    ids=["text", "zero", "nine", "huge", "rational-outside", "count-outside"],
)
def test_an_unusable_orientation_leaves_the_picture_as_stored(tmp_path, orientation_entry):
    path = tmp_path / "o.png"
    Image.fromarray(RGB).save(path, exif=_exif([orientation_entry, (0x011A, 2, 4, b"abc\0")]))
    assert np.array_equal(np.asarray(read_image(path)), RGB)


@pytest.mark.parametrize("garbage", [b"Exif\x00\x00MM\x00*\x00\x00\xff\xff", b"Exif\x00\x00II*\x00", b"\x00" * 40, b"Exif\x00\x00" + bytes(range(200))])
def test_a_damaged_exif_block_is_ignored(tmp_path, garbage):
    path = tmp_path / "g.png"
    Image.fromarray(RGB).save(path, exif=garbage)
    assert np.array_equal(np.asarray(read_image(path)), RGB)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_transpose_on_good_metadata(tmp_path, orientation):
    from PIL import ImageOps

    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = orientation
    exif[0x011A] = 72.0
    path = tmp_path / f"o{orientation}.png"
    image.save(path, exif=exif)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(np.asarray(read_image(path)), want)


def _avif_with_damage(path, damage: str) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat") + 4
    end = len(data)
    if damage == "zeroed":
        data[start:] = bytes(end - start)
    elif damage == "random":
        data[start:] = np.random.default_rng(1).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    elif damage == "half-zeroed":
        data[(start + end) // 2 :] = bytes(end - (start + end) // 2)
    elif damage == "cut":
        del data[(start + end) // 2 :]
    elif damage == "no-data":
        del data[start:]
    path.write_bytes(bytes(data))


@pytest.mark.skipif(not __import__("PIL.features").features.check("avif"), reason="this Pillow has no AVIF codec")
@pytest.mark.parametrize("damage", ["zeroed", "random", "half-zeroed", "cut", "no-data"])
def test_damaged_avif_is_a_one_line_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "photo.avif"
    _avif_with_damage(path, damage)
    try:
        out = read_image(path)  # some damage still decodes (to a wrong picture): fine, as long as nothing else escapes
    except WetokError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
    else:
        assert out.mode == "RGB" and out.size == (48, 32) and damage != "zeroed"


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("Failed to decode frame 0"), TypeError("bad operand type"), __import__("struct").error("unpack requires"),
     ZeroDivisionError("division by zero"), IndexError("tuple index out of range"), KeyError("tag"), EOFError(),
     MemoryError(), AssertionError("plugin invariant"), NotImplementedError("mode")],
    ids=lambda e: type(e).__name__,
)
def test_any_decoder_exception_becomes_a_wetok_error_naming_the_file(tmp_path, monkeypatch, exc):
    from PIL import ImageFile

    path = tmp_path / "x.png"
    Image.fromarray(RGB).save(path)

    def fail(self):
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(WetokError, match=r"x.png: (truncated or corrupt image|out of memory)") as info:
        read_image(path)
    assert "\n" not in str(info.value)
    with pytest.raises(WetokError, match="member.png: "):
        decode_image(path.read_bytes(), "member.png")


# ---- only regular files are read (#12) -----------------------------------------------------------
def test_fifos_sockets_and_devices_are_refused_before_reading(tmp_path):
    import os
    import socket

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(WetokError, match=r"pipe.png: is a named pipe \(FIFO\), not an image"):
        read_image(fifo)
    sock_path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        with pytest.raises(WetokError, match=r"s.png: is a socket, not an image"):
            read_image(sock_path)
    finally:
        server.close()
    if os.path.exists("/dev/zero"):
        with pytest.raises(WetokError, match="/dev/zero: is a character device"):
            read_image("/dev/zero")
        link = tmp_path / "zero.jpg"
        link.symlink_to("/dev/zero")  # a link is followed: what it names decides
        with pytest.raises(WetokError, match="zero.jpg: is a character device"):
            read_image(link)
    good = tmp_path / "good.png"
    Image.fromarray(RGB).save(good)
    (tmp_path / "link.png").symlink_to(good)
    assert np.array_equal(np.asarray(read_image(tmp_path / "link.png")), RGB)


# ---- deep folders (#9) ---------------------------------------------------------------------------
def deep_chain(root, depth: int, name: str = "d"):
    """root/d/d/.../d (depth folders, made one by one: os.makedirs recurses); returns the
    folders, shallowest first."""
    folders = [root]
    for _ in range(depth):
        folders.append(folders[-1] / name)
        folders[-1].mkdir()
    return folders[1:]


def remove_chain(folders) -> None:
    """Remove a deep chain deepest first (shutil.rmtree recurses and would fail on it)."""
    for folder in reversed(folders):
        for entry in folder.iterdir():
            if not entry.is_dir() or entry.is_symlink():
                entry.unlink()
        folder.rmdir()


@pytest.mark.parametrize("depth", [1200, 1900])  # 1900 levels: a path of about 3900 characters, near PATH_MAX
def test_list_images_walks_any_depth(tmp_path, depth):
    from wetok.images import list_images

    folders = deep_chain(tmp_path, depth)
    try:
        Image.fromarray(RGB).save(folders[-1] / "deep.png")
        Image.fromarray(RGB).save(folders[depth // 2] / "middle.jpg")
        Image.fromarray(RGB).save(tmp_path / "top.png")
        found = list_images(tmp_path)
        assert [p.name for p in found] == ["deep.png", "middle.jpg", "top.png"]  # sorted by relative path: "d/d/..." < "top"
        assert len(found[0].relative_to(tmp_path).parts) == depth + 1
        assert np.array_equal(np.asarray(read_image(found[0])), RGB)
    finally:
        remove_chain(folders)


def test_list_images_shows_what_it_cannot_read_and_leaves_out_links_to_folders(tmp_path):
    import os

    from wetok.images import list_images

    (tmp_path / "sub").mkdir()
    Image.fromarray(RGB).save(tmp_path / "sub" / "a.png")
    (tmp_path / "loop").symlink_to(tmp_path)  # a link to a folder is not followed: no endless walk
    os.mkfifo(tmp_path / "sub" / "fifo.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["gone.png", "sub/a.png", "sub/fifo.png"]  # listed, so that reading them says why they fail
    with pytest.raises(WetokError, match="is a named pipe"):
        read_image(tmp_path / "sub" / "fifo.png")
    with pytest.raises(WetokError, match="gone.png: no such file"):
        read_image(tmp_path / "gone.png")


# ---- the pixels processed are bounded (#5) --------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 12000), (12000, 1), (1, 200000), (3, 40000), (50000, 2), (2, 2_000_000)])
def test_extreme_aspect_ratios_are_refused_before_allocating(shape):
    image = np.zeros((*shape, 3), np.uint8)
    with pytest.raises(WetokError, match=r"^thin.png: resizing the shorter side to 256 .* over the limit of 89478485"):
        resize_shorter_side(image, 256, name="thin.png")
    with pytest.raises(WetokError, match="thin.png: "):
        resize_shorter_center_crop(image, 256, name="thin.png")
    with pytest.raises(WetokError, match="over the limit of 1000"):
        resize_shorter_side(image, 256, max_pixels=1000, name="thin.png")


@pytest.mark.parametrize("shape, size", [((10, 1000), 256), ((1, 300), 64), ((300, 3), 128), ((40, 50), 4000)])
def test_ordinary_shapes_still_resize(shape, size):
    out = resize_shorter_side(np.zeros((*shape, 3), np.uint8), size)
    assert min(out.shape[:2]) == size and out.shape[0] * out.shape[1] <= 89478485


def test_the_limit_can_be_lifted_but_not_past_what_opencv_addresses():
    image = np.zeros((1, 2000, 3), np.uint8)
    assert resize_shorter_side(image, 8, max_pixels=None).shape == (8, 16000, 3)
    with pytest.raises(WetokError, match="too large to compute"):
        resize_shorter_side(np.zeros((1, 200000, 3), np.uint8), 1_000_000, max_pixels=None, name="x")
    with pytest.raises(WetokError, match="at least 1 pixel"):
        resize_shorter_side(image, 0)


@pytest.mark.parametrize("size", [10_000, 65535, 1_000_000])
def test_stretch_targets_over_the_limit_are_refused(size):
    with pytest.raises(WetokError, match=rf"s.png: stretching to {size}x{size} .* over the limit"):
        stretch_resize(np.zeros((4, 4, 3), np.uint8), size, name="s.png")
    assert stretch_resize(np.zeros((4, 4, 3), np.uint8), 300).shape == (300, 300, 3)


# ---- the same rules in training and evaluation data ----------------------------------------------
def test_training_data_skips_broken_metadata_decoders_and_extreme_shapes(tmp_path):
    import io
    import tarfile

    from PIL import features

    from wetok.training.data import ImageFiles, RandomCrop, TarShards

    crop = RandomCrop(16, resize=32)
    with pytest.raises(WetokError, match=r"^line.png: resizing the shorter side to 32"):
        crop(np.zeros((1, 100000, 3), np.uint8), torch.Generator().manual_seed(0), "line.png")
    Image.fromarray(np.zeros((1, 100000, 3), np.uint8)).save(tmp_path / "0-line.png")
    Image.fromarray(RGB).resize((40, 40)).save(tmp_path / "1-exif.png", exif=_exif(BROKEN_EXIF["xres-text"]))
    Image.fromarray(RGB).resize((40, 40)).save(tmp_path / "2-good.png")
    files = sorted(tmp_path.glob("*.png"))
    item = ImageFiles(files, crop)[(0, 123)]
    assert item["skipped"] == 1 and item["image"].shape == (3, 16, 16)  # the line is passed over, the broken EXIF read

    members = {name: path.read_bytes() for name, path in zip(("a.png", "b.png", "c.png"), files)}
    if features.check("avif"):
        _avif_with_damage(tmp_path / "d.avif", "zeroed")
        members["d.avif"] = (tmp_path / "d.avif").read_bytes()
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    stream = iter(TarShards([shard], crop, rank=0, world=1, seed=0))
    first, second = next(stream), next(stream)
    assert first["skipped"] == 1 and second["skipped"] == 0  # a.png (the line) skipped; b.png, c.png read
    third = next(stream)  # d.avif (damaged) skipped, then in the next epoch a.png again, then b.png
    assert third["skipped"] == (2 if features.check("avif") else 1)


def test_evaluation_data_skips_extreme_shapes_naming_the_file(tmp_path):
    from wetok.evaluation.data import _ImageSet

    Image.fromarray(np.zeros((12000, 1, 3), np.uint8)).save(tmp_path / "tall.png")
    Image.fromarray(RGB).resize((300, 200)).save(tmp_path / "ok.png")
    dataset = _ImageSet([tmp_path / "tall.png", tmp_path / "ok.png"], 256, None)
    kind, index, reason = dataset[0]
    assert (kind, index) == ("skip", 0) and reason.startswith(f"{tmp_path / 'tall.png'}: resizing the shorter side to 256")
    kind, _, image = dataset[1]
    assert kind == "ok" and image.shape == (256, 256, 3)
