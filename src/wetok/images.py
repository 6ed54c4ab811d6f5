"""Images, the one place: reading and listing image files, converting between PIL images /
uint8 arrays and the model's tensors, the resize and crop protocols, padding to the token grid,
and writing image files.

Model tensors: float (B, 3, H, W) in [-1, 1], pixel value v in 0..255 maps to v / 127.5 - 1.

`resize_shorter_center_crop` is the released evaluation protocol: the shorter side resized to
`size` with bilinear interpolation exactly as OpenCV's INTER_LINEAR computes it (the original
uses albumentations `SmallestMaxSize` + `CenterCrop`, both OpenCV-based), then a centre crop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import WetokError, first_line
from .files import atomic_write, require_regular_file, walk_files

Uint8Mode = Literal["round", "truncate"]


def _array_to_hwc_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise WetokError(f"arrays must be uint8 (0..255), got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise WetokError(f"arrays must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        return np.asarray(to_rgb(Image.fromarray(array)))
    return array


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An 8-bit RGB copy of `image`: transparency composited on `background` (white), palette,
    grayscale, CMYK, 16-bit and 32-bit integer modes converted (scaled from 16 bits when values
    exceed 255); 32-bit float images scaled from [0, 1] when they lie there."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        top = arr.max(initial=0.0)
        # float images in [0, 1] (the usual convention) are scaled up; integers as 8 or 16 bits
        peak = 1.0 if image.mode == "F" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, background + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image.convert("RGB")


IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".avif", ".gif", ".ppm", ".pgm"}
)
"""File name endings (lower case) that every wetok tool treats as images."""


def is_image_file(path: Path) -> bool:
    """True for a regular file whose ending is in `IMAGE_SUFFIXES` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(root: str | Path, *, limit: int | None = None) -> list[Path]:
    """Image files under `root`, recursively (any depth: an explicit stack, `files.walk_files`),
    hidden files and folders left out, sorted by their path relative to `root` (so image i is
    the same file for every process and run); the first `limit` of them when given. Entries with
    an image ending that are not regular files (FIFOs, sockets, devices, dangling links) are
    listed too, so that reading them refuses them by name (`read_image`) instead of leaving them
    out unseen. May be empty; raises `WetokError` when `root` is missing, not a folder, or holds a
    folder that cannot be listed."""
    root = Path(root)
    if not root.exists():
        raise WetokError(f"{root}: no such folder")
    if not root.is_dir():
        raise WetokError(f"{root}: not a folder of images")
    if limit is not None and limit <= 0:
        raise WetokError(f"limit must be positive, got {limit}")
    files = (p for p in walk_files(root, hidden=False) if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())[:limit]


DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
"""Pillow's decompression-bomb limit (about 89 megapixels); larger images are refused by default,
and so are resize targets (`resize_shorter_side`, `stretch_resize`) above it."""

MAX_SIZE = 65535
"""The largest resize size (`--size`): the .wtok header's 16-bit size field."""

_OPENCV_MAX_SIDE = 2**31 - 1
"""OpenCV's sizes are C ints: a side beyond this is refused even when the pixel guard is lifted."""


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file as 8-bit RGB, the way every wetok tool does (`decode_image`).

    Raises `WetokError` with a one-line message naming the file for missing, empty, truncated,
    oversized or non-image files, and for what is not a regular file (a FIFO, a socket, a device
    such as /dev/zero), refused before anything is read.
    """
    path = Path(path)
    info = require_regular_file(path, "an image", WetokError)
    try:
        if info.st_size == 0:
            raise WetokError(f"{path}: empty file")
        with path.open("rb") as fh:
            return decode_image(fh, str(path), max_pixels=max_pixels)
    except OSError as exc:
        raise WetokError(f"{path}: cannot read: {exc.strerror or exc}") from None


def decode_image(data: bytes | io.IOBase, name: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image (bytes or a binary file object) as 8-bit RGB.

    EXIF orientation is applied (read from the raw tag: damaged or wrongly typed metadata
    elsewhere in the EXIF block, such as a text XResolution, is ignored; an unreadable or
    out-of-range orientation leaves the picture as stored); grayscale, palette, CMYK and 16-bit
    images are converted; transparency is composited on white. Images over `max_pixels` pixels
    are refused as possible decompression bombs (`max_pixels=None` lifts the guard for trusted
    files). Raises `WetokError` with a one-line message naming `name` for empty, truncated,
    corrupt or non-image data, whatever exception the Pillow plugin raised (a damaged AVIF's
    RuntimeError, a TypeError or struct.error of broken metadata, MemoryError, ...).
    """
    from PIL import UnidentifiedImageError

    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    # Pillow's own guard is replaced by the explicit check below (same default limit), so
    # that the message names the file and the override.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(source) as im:
            pixels = im.width * im.height
            if max_pixels is not None and pixels > max_pixels:
                raise WetokError(
                    f"{name}: {im.width}x{im.height} = {pixels} pixels exceeds the decompression-bomb limit of "
                    f"{max_pixels}; allow it explicitly if you trust the file (max_pixels=None; command line: --max-pixels 0)"
                )
            im.load()
            orientation = _orientation(im)
            return to_rgb(_orient(im, orientation)).copy()
    except WetokError:
        raise
    except UnidentifiedImageError:
        raise WetokError(f"{name}: not an image, or a format Pillow cannot read") from None
    except MemoryError:
        raise WetokError(f"{name}: out of memory decoding the image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise WetokError(f"{name}: truncated or corrupt image ({first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 (any other failure of a decoder plugin: RuntimeError, TypeError, struct.error, ...)
        raise WetokError(f"{name}: truncated or corrupt image ({type(exc).__name__}: {first_line(exc)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation (2..8) -> the transpose that shows the picture upright (1: as stored)."""


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8) of an opened image, 1 when absent, unreadable, of a wrong
    type or out of range. Only this tag is read: Pillow's `exif_transpose` also rewrites the rest
    of the EXIF block and fails on wrongly typed entries there, which the picture does not need."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 (a damaged EXIF block, whatever Pillow raises: read the picture without it)
        return 1
    if isinstance(value, tuple) and len(value) >= 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        return 1
    return value


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def to_tensor(images: "Image.Image | np.ndarray | torch.Tensor | Sequence[Image.Image]") -> torch.Tensor:
    """PIL image(s) or uint8 array/tensor -> float32 (B, 3, H, W) in [-1, 1].

    Accepts one PIL image, a list of same-sized PIL images, a uint8 array (H, W), (H, W, 3) or
    (B, H, W, 3), or a uint8 tensor (B, 3, H, W) / (3, H, W).
    """
    if isinstance(images, Image.Image):
        arrays = np.asarray(to_rgb(images))[None]
    elif isinstance(images, (list, tuple)):
        if not images:
            raise WetokError("no images given")
        arrays = np.stack([np.asarray(to_rgb(im)) for im in images])
    elif isinstance(images, np.ndarray):
        arrays = images[None] if images.ndim <= 3 else images
        if arrays.ndim == 4 and arrays.shape[-1] in (3, 4) or arrays.ndim == 3:
            arrays = np.stack([_array_to_hwc_uint8(a) for a in arrays])
        else:
            raise WetokError(f"unsupported array shape {images.shape}")
    elif isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise WetokError(f"tensors must be uint8 here (float tensors are already model input), got {images.dtype}")
        t = images[None] if images.dim() == 3 else images
        if t.dim() != 4 or t.shape[1] != 3:
            raise WetokError(f"uint8 tensors must be (B, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
        return t.float() / 127.5 - 1.0
    else:
        raise WetokError(f"cannot convert {type(images).__name__} to an image tensor")
    # contiguous NCHW: convolutions round differently on channels-last strides, so the layout is fixed
    return torch.from_numpy(np.array(arrays, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2).contiguous().float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float (B, 3, H, W) (or (3, H, W)) in [-1, 1] -> uint8 (B, H, W, 3) numpy on the CPU:
    clamp, (x + 1) * 127.5, round."""
    if images.dim() == 3:
        images = images[None]
    return to_uint8_tensor(images.detach().float()).cpu().numpy()


def to_uint8_tensor(images: torch.Tensor, mode: Uint8Mode = "round") -> torch.Tensor:
    """Float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3) on the same device: clamp, then
    "round": round((x + 1) * 127.5), or "truncate": as the original scripts, int((x + 1) / 2 * 255)."""
    images = images.clamp(-1, 1)
    scaled = ((images + 1) * 127.5).round() if mode == "round" else (images + 1) / 2 * 255
    return scaled.to(torch.uint8).permute(0, 2, 3, 1)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float (B, 3, H, W) in [-1, 1] -> B RGB PIL images."""
    return [Image.fromarray(a) for a in to_uint8(images)]


# ---- resize and crop protocols (uint8 (H, W, 3) arrays in, uint8 arrays out) -----------------------
def shorter_side_target(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side of a height x width image to `size`: the
    other side round(side * size / shorter) (Python rounding, as albumentations)."""
    scale = size / float(min(height, width))
    return round(height * scale), round(width * scale)


def check_target_pixels(
    height: int, width: int, target: tuple[int, int], max_pixels: int | None, name: str, what: str
) -> None:
    """Refuse (`WetokError` naming `name`) work on a target of target = (height, width) pixels
    above `max_pixels` (the decompression-bomb limit; None: no limit, but still no side beyond
    what OpenCV can address): the memory an image costs is bounded by the pixels processed, not by
    the size of its file (a 12000 x 1 PNG of 115 bytes would resize to 256 x 3,072,000)."""
    th, tw = target
    if max_pixels is not None and th * tw > max_pixels:
        raise WetokError(
            f"{name}: {what} of the {width}x{height} image would be {tw}x{th} = {th * tw} pixels, over the limit of "
            f"{max_pixels} (an extreme aspect ratio or size; command line: --max-pixels 0 lifts the limit)"
        )
    if max(th, tw) > _OPENCV_MAX_SIDE or th * tw > 2**40:
        raise WetokError(f"{name}: {what} of the {width}x{height} image would be {tw}x{th} pixels, too large to compute")


def resize_shorter_side(
    image: np.ndarray, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image"
) -> np.ndarray:
    """Resize uint8 (H, W, 3) so that its shorter side is `size` (1.. pixels); the other side
    becomes round(side * size / shorter) (Python rounding, as albumentations). OpenCV INTER_LINEAR.

    A result over `max_pixels` pixels is refused with a `WetokError` naming `name`
    (`check_target_pixels`), before anything is allocated."""
    import cv2

    h, w = image.shape[:2]
    if min(h, w) <= 0:
        raise WetokError(f"{name}: empty image ({h}x{w})")
    if size < 1:
        raise WetokError(f"{name}: resize size must be at least 1 pixel, got {size}")
    if size == min(h, w):
        return image
    new_h, new_w = shorter_side_target(h, w, size)
    check_target_pixels(h, w, (new_h, new_w), max_pixels, name, f"resizing the shorter side to {size}")
    try:
        return cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    except MemoryError:
        raise WetokError(f"{name}: out of memory resizing {w}x{h} to {new_w}x{new_h}") from None
    except cv2.error as exc:
        raise WetokError(f"{name}: cannot resize {w}x{h} to {new_w}x{new_h} ({first_line(exc)})") from None


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop the central height x width window of (H, W, ...); top-left at ((H-h)//2, (W-w)//2)."""
    h, w = image.shape[:2]
    if h < height or w < width:
        raise WetokError(f"cannot crop {height}x{width} from a {h}x{w} image")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def resize_shorter_center_crop(
    image: np.ndarray, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image"
) -> np.ndarray:
    """The evaluation protocol: uint8 (H, W, 3) -> uint8 (size, size, 3), the shorter side to
    `size` (bilinear), then the centre crop. The resized image (before the crop) must stay within
    `max_pixels` (`resize_shorter_side`)."""
    return center_crop(resize_shorter_side(image, size, max_pixels=max_pixels, name=name), size, size)


def stretch_resize(
    image: np.ndarray, size: int, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image"
) -> np.ndarray:
    """Resize uint8 (H, W, 3) to (size, size, 3) ignoring the aspect ratio, bicubic (PIL), as the
    original encode tool; size x size over `max_pixels` is refused (`WetokError` naming `name`)."""
    h, w = image.shape[:2]
    if size < 1:
        raise WetokError(f"{name}: resize size must be at least 1 pixel, got {size}")
    check_target_pixels(h, w, (size, size), max_pixels, name, f"stretching to {size}x{size}")
    try:
        return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    except MemoryError:
        raise WetokError(f"{name}: out of memory resizing {w}x{h} to {size}x{size}") from None


# ---- padding to the token grid (tensors) ----------------------------------------------------------
@dataclass(frozen=True)
class CropBox:
    """Where the original image sits inside a padded one: rows [top, top+height), columns [left, left+width)."""

    top: int
    left: int
    height: int
    width: int


def pad_to_multiple(images: torch.Tensor, multiple: int, value: float = 0.0) -> tuple[torch.Tensor, CropBox]:
    """Pad (B, C, H, W) centrally with `value` so that H and W become multiples of `multiple`.

    The extra row/column of an odd padding goes to the bottom/right. Returns the padded tensor
    and the box that `crop` uses to undo it. Zero in [-1, 1] images is mid-grey, as the original
    evaluation pads.
    """
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    top, left = ph // 2, pw // 2
    box = CropBox(top, left, h, w)
    if ph == 0 and pw == 0:
        return images, box
    return F.pad(images, (left, pw - left, top, ph - top), value=value), box


def crop(images: torch.Tensor, box: CropBox) -> torch.Tensor:
    """Undo `pad_to_multiple`: (B, C, H', W') -> (B, C, box.height, box.width)."""
    return images[..., box.top : box.top + box.height, box.left : box.left + box.width]


# ---- writing image files --------------------------------------------------------------------------
def image_format(path: Path) -> str:
    """Pillow's format name for an output path's suffix; a clear error for unknown suffixes."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise WetokError(f"{path}: cannot tell the image format to write from the suffix {path.suffix!r} (use .png, .jpg, .webp, ...)")
    return fmt


def save_image(path: Path, pixels: torch.Tensor) -> Path:
    """Write one picture, float (1, 3, H, W) or (3, H, W) in [-1, 1], atomically (temporary file
    then rename). JPEG and WebP at quality 95."""
    fmt = image_format(path)
    image = Image.fromarray(to_uint8(pixels)[0])
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda p: image.save(p, format=fmt, **options))
    return path
