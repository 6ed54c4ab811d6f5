"""Image resizing and cropping protocols (uint8 HxWx3 arrays in, uint8 arrays out).

`resize_shorter_center_crop` is the released evaluation protocol: the shorter side resized to
`size` with bilinear interpolation exactly as OpenCV's INTER_LINEAR computes it (the original
uses albumentations `SmallestMaxSize` + `CenterCrop`, both OpenCV-based), then a centre crop.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import WetokError


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 (H, W, 3) so that its shorter side is `size`; the other side becomes
    round(side * size / shorter) (Python rounding, as albumentations). OpenCV INTER_LINEAR."""
    import cv2

    h, w = image.shape[:2]
    if min(h, w) <= 0:
        raise WetokError(f"empty image ({h}x{w})")
    scale = size / float(min(h, w))
    if scale == 1.0:
        return image
    new_h, new_w = round(h * scale), round(w * scale)
    return cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop the central height x width window of (H, W, ...); top-left at ((H-h)//2, (W-w)//2)."""
    h, w = image.shape[:2]
    if h < height or w < width:
        raise WetokError(f"cannot crop {height}x{width} from a {h}x{w} image")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def resize_shorter_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The evaluation protocol: shorter side to `size` (bilinear), centre crop size x size."""
    return center_crop(resize_shorter_side(image, size), size, size)


def stretch_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size ignoring the aspect ratio, bicubic (PIL), as the original encode tool."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
