"""Classical codecs at a given bit rate: the rate-distortion reference points of an evaluation.

`compress_to_bpp` encodes an image with JPEG, WebP or AVIF (Pillow) at the highest quality whose
size is within a target number of bits per pixel (found by bisection over the quality scale),
and returns the decoded image. When even the lowest quality is above the target (tiny targets on
tiny images, where headers dominate), the lowest quality is used and the result says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, features

from ..errors import WetokError

Codec = Literal["jpeg", "webp", "avif"]
CODECS: tuple[Codec, ...] = ("jpeg", "webp", "avif")
_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
_QUALITY_RANGE = {"jpeg": (1, 95), "webp": (0, 100), "avif": (0, 100)}
_FEATURE = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True)
class Compressed:
    """A decoded codec result: `image` uint8 (H, W, 3), its `bpp` (file bits per pixel), the
    `quality` used, and whether the target rate was met."""

    image: np.ndarray
    bpp: float
    quality: int
    met_target: bool


def check_codecs(names: list[str] | tuple[str, ...]) -> tuple[Codec, ...]:
    """Validate codec names against what this Pillow can encode; raises a one-line `WetokError`."""
    out: list[Codec] = []
    for name in names:
        if name not in _FORMAT:
            raise WetokError(f"unknown baseline codec {name!r}; choose from {', '.join(CODECS)}")
        if not features.check(_FEATURE[name]):
            hint = " (pip install pillow-avif-plugin, or Pillow >= 11.2 built with libavif)" if name == "avif" else ""
            raise WetokError(f"this Pillow cannot encode {name}{hint}")
        out.append(name)  # type: ignore[arg-type]
    return tuple(out)


def encode(image: np.ndarray, codec: Codec, quality: int) -> bytes:
    """The file bytes of uint8 (H, W, 3) `image` at `quality` (4:2:0 chroma, Pillow defaults otherwise)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=_FORMAT[codec], quality=int(quality))
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decoded RGB uint8 (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def compress_to_bpp(image: np.ndarray, codec: Codec, target_bpp: float) -> Compressed:
    """Encode uint8 (H, W, 3) at the highest quality whose bits per pixel are <= `target_bpp`."""
    pixels = image.shape[0] * image.shape[1]
    lo, hi = _QUALITY_RANGE[codec]
    cache: dict[int, bytes] = {}

    def size_at(q: int) -> float:
        if q not in cache:
            cache[q] = encode(image, codec, q)
        return len(cache[q]) * 8 / pixels

    if size_at(lo) > target_bpp:
        best, met = lo, False
    else:
        best, met = lo, True
        a, b = lo + 1, hi  # invariant: best fits; search (a..b) for a higher quality that fits
        while a <= b:
            mid = (a + b) // 2
            if size_at(mid) <= target_bpp:
                best, a = mid, mid + 1
            else:
                b = mid - 1
    return Compressed(image=decode(cache[best]), bpp=size_at(best), quality=best, met_target=met)
