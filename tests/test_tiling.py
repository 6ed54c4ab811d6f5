"""Tiled encoding/decoding: window layout, blending, pooled normalisation statistics, and the
distance to untiled processing on a small random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import wetok.codec as codec
from cli_helpers import TINY, TINY_GD, photo
from wetok import Tokenizer
from wetok.errors import WetokError
from wetok.images import to_tensor
from wetok.tiling import (
    TileSpec,
    axis_windows,
    decode_tiled,
    encode_latent_tiled,
    encode_tiled,
    owned_spans,
    run_tiled,
    stats_sample,
)


def model(config=TINY, seed=0) -> Tokenizer:
    torch.manual_seed(seed)
    m = Tokenizer(config).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.mark.parametrize("length, window, overlap", [(10, 4, 1), (16, 8, 2), (17, 8, 3), (5, 8, 2), (8, 8, 2)])
def test_windows_cover_with_overlap_and_spans_partition(length, window, overlap):
    windows = axis_windows(length, window, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert len({b - a for a, b in windows}) == 1 and windows[0][1] - windows[0][0] == min(window, length)
    for (a0, a1), (b0, b1) in zip(windows, windows[1:]):
        assert a1 - b0 >= overlap and b0 > a0
    spans = owned_spans(windows)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))
    assert all(w0 <= s0 < s1 <= w1 for (w0, w1), (s0, s1) in zip(windows, spans))


def test_stats_sample_spreads_and_respects_the_limit():
    rows, cols = axis_windows(40, 8, 2), axis_windows(40, 8, 2)
    assert len(rows) == 7
    sample = stats_sample(rows, cols, 4)
    assert len(sample) == 4
    starts = {(w[0].start, w[1].start) for w, _ in sample}
    assert starts == {(0, 0), (0, 32), (32, 0), (32, 32)}
    assert len(stats_sample(rows, cols, 100)) == 49


def test_blending_reproduces_a_field_exactly():
    field = torch.randn(1, 2, 9 * 3, 13 * 3)

    def cut(windows):
        return torch.cat([field[:, :, r.start * 3 : r.stop * 3, c.start * 3 : c.stop * 3] for r, c in windows])

    out = run_tiled(cut, (9, 13), 4, 1, 3, 2)
    assert torch.allclose(out, field, atol=1e-6)


def test_pooled_statistics_make_a_groupnorm_exact_across_windows():
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 4, eps=1e-6)
    nn.init.normal_(norm.weight)
    field = torch.randn(1, 4, 24, 20)
    field[:, :, :12] *= 5  # windows with very different statistics
    field[:, :, :, :8] += 3

    def run(windows):
        return norm(torch.cat([field[:, :, r, c] for r, c in windows]))

    pooled = run_tiled(run, (24, 20), 8, 2, 1, 4, network=norm, stats_windows=100)
    alone = run_tiled(run, (24, 20), 8, 2, 1, 4)
    want = norm(field)
    assert (pooled - want).abs().max().item() < 1e-4
    assert (alone - want).abs().max().item() > 0.5


def test_one_window_equals_untiled():
    m = model()
    image = to_tensor(photo(32, 48))
    latent = m.encode_latent(image)
    assert (encode_latent_tiled(m, image, TileSpec(256, 64)) - latent).abs().max().item() < 1e-4
    tokens = m.encode(image)
    assert (decode_tiled(m, tokens, TileSpec(256, 64)) - m.decode(tokens)).abs().max().item() < 1e-4


def psnr(a, b):
    return 10 * np.log10(4 / ((a - b) ** 2).mean().item())


@pytest.mark.parametrize("config", [TINY, TINY_GD], ids=["plain", "generative"])
def test_tiled_is_close_to_untiled_and_pooling_helps(config):
    m = model(config)
    image = to_tensor(np.concatenate([photo(64, 48, 1), photo(64, 48, 2) // 3], 1))  # a bright and a dark half
    f = m.downsample
    latent = m.encode_latent(image)
    tokens = m.codes_to_tokens(latent)
    spec = TileSpec(16 * f, 4 * f, 100)
    pooled = encode_latent_tiled(m, image, spec)
    alone = encode_latent_tiled(m, image, TileSpec(16 * f, 4 * f, 0))
    assert (pooled - latent).abs().mean() < 0.5 * (alone - latent).abs().mean()
    assert ((pooled > 0) == (latent > 0)).float().mean() > 0.9
    noise = None if not config.generative else torch.randn(1, config.latent_channels, *tokens.shape[1:3])
    untiled = m.decode(tokens, noise=noise)
    tiled = decode_tiled(m, tokens, spec, noise=noise)
    tiled_alone = decode_tiled(m, tokens, TileSpec(16 * f, 4 * f, 0), noise=noise)
    assert psnr(tiled, untiled) > 25
    assert psnr(tiled, untiled) > psnr(tiled_alone, untiled) + 1
    assert torch.equal(encode_tiled(m, image, spec), m.codes_to_tokens(pooled))


def test_tiling_argument_errors():
    m = model(TINY_GD)
    tokens = torch.zeros(1, 4, 4, 3, dtype=torch.long)
    with pytest.raises(WetokError, match="needs noise"):
        decode_tiled(m, tokens, TileSpec(16, 4))
    with pytest.raises(WetokError, match="less than half the tile"):
        TileSpec(16, 8).cells(2)
    with pytest.raises(WetokError, match="multiples of 2"):
        encode_tiled(m, torch.zeros(1, 3, 5, 8), TileSpec(16, 4))


def test_large_images_are_tiled_in_the_codec(monkeypatch):
    m = model()
    loaded = codec.LoadedModel(m, None)  # type: ignore[arg-type]
    prepared = codec.prepare_image(Image.fromarray(photo(64, 64)), codec.SizePolicy(0), 4, "x")
    monkeypatch.setattr(codec, "AUTO_TILE_PIXELS", 32 * 32)
    spec = TileSpec(32, 8, 4)
    (tiled,) = codec.encode_images(loaded, [prepared], codec.SizePolicy(0), spec)
    assert torch.equal(tiled.tokens, encode_tiled(m, prepared.pixels, spec))
    (plain,) = codec.encode_images(loaded, [prepared], codec.SizePolicy(0), None)
    assert torch.equal(plain.tokens, m.encode(prepared.pixels))
    pictures = codec.decode_tokens(m, tiled, tile=spec)
    assert torch.equal(pictures, decode_tiled(m, tiled.tokens, spec))
