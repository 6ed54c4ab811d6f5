"""Resize/crop protocols."""

from __future__ import annotations

import numpy as np
import pytest

import wetok
from wetok.transforms import center_crop, resize_shorter_center_crop, resize_shorter_side, stretch_resize


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
