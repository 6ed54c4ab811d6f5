"""Conversions between PIL images / uint8 arrays and the model's image tensors.

Model tensors: float (B, 3, H, W) in [-1, 1], pixel value v in 0..255 maps to v / 127.5 - 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .errors import WetokError
from .files import require_file


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


def list_images(root: str | Path) -> list[Path]:
    """Image files under `root`, recursively, hidden files and folders left out, sorted by their
    path relative to `root` (so image i is the same file for every process and run). May be
    empty; raises `WetokError` when `root` is missing or not a folder."""
    root = Path(root)
    if not root.exists():
        raise WetokError(f"{root}: no such folder")
    if not root.is_dir():
        raise WetokError(f"{root}: not a folder of images")
    files = (
        p for p in root.rglob("*")
        if is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
"""Pillow's decompression-bomb limit (about 89 megapixels); larger images are refused by default."""


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file as 8-bit RGB, the way every wetok tool does.

    EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images are converted;
    transparency is composited on white. Images over `max_pixels` pixels are refused as possible
    decompression bombs (`max_pixels=None` lifts the guard for trusted files). Raises `WetokError`
    with a one-line message naming the file for missing, empty, truncated or non-image files.
    """
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    require_file(path, "an image", WetokError)
    try:
        if path.stat().st_size == 0:
            raise WetokError(f"{path}: empty file")
        # Pillow's own guard is replaced by the explicit check below (same default limit), so
        # that the message names the file and the override.
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:
                pixels = im.width * im.height
                if max_pixels is not None and pixels > max_pixels:
                    raise WetokError(
                        f"{path}: {im.width}x{im.height} = {pixels} pixels exceeds the decompression-bomb limit of "
                        f"{max_pixels}; allow it explicitly if you trust the file (max_pixels=None; command line: --max-pixels 0)"
                    )
                im.load()
                return to_rgb(ImageOps.exif_transpose(im)).copy()
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    except WetokError:
        raise
    except UnidentifiedImageError:
        raise WetokError(f"{path}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise WetokError(f"{path}: truncated or corrupt image ({str(exc).strip() or type(exc).__name__})") from None


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
    """Float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3): clamp, (x + 1) * 127.5, round."""
    if images.dim() == 3:
        images = images[None]
    scaled = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float (B, 3, H, W) in [-1, 1] -> B RGB PIL images."""
    return [Image.fromarray(a) for a in to_uint8(images)]
