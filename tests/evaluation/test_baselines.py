"""Codec baselines: the highest quality within the target rate, found by bisection."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data as skimage_data

from wetok.errors import WetokError
from wetok.evaluation.baselines import CODECS, check_codecs, compress_to_bpp, encode


@pytest.mark.parametrize("codec", CODECS)
def test_highest_quality_within_target(codec: str) -> None:
    pytest.importorskip("PIL.features").check(codec if codec != "jpeg" else "jpg") or pytest.skip(f"no {codec} in Pillow")
    image = np.ascontiguousarray(skimage_data.astronaut()[100:228, 150:278])
    pixels = 128 * 128
    for target in (0.8, 2.0):
        result = compress_to_bpp(image, codec, target)  # type: ignore[arg-type]
        assert result.met_target and result.bpp <= target
        assert result.bpp == pytest.approx(len(encode(image, codec, result.quality)) * 8 / pixels)  # type: ignore[arg-type]
        # The next quality up no longer fits (or there is none).
        top = 95 if codec == "jpeg" else 100
        if result.quality < top:
            assert len(encode(image, codec, result.quality + 1)) * 8 / pixels > target  # type: ignore[arg-type]
        assert result.image.shape == image.shape and result.image.dtype == np.uint8


def test_unreachable_target_uses_lowest_quality() -> None:
    image = np.ascontiguousarray(skimage_data.coffee()[:32, :32])
    result = compress_to_bpp(image, "jpeg", 0.01)
    assert not result.met_target and result.quality == 1 and result.bpp > 0.01


def test_unknown_codec() -> None:
    with pytest.raises(WetokError, match="unknown baseline codec 'bpg'"):
        check_codecs(["jpeg", "bpg"])
    assert check_codecs(["jpeg"]) == ("jpeg",)
