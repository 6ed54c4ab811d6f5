"""Tiled encoding/decoding: window layout, blending, whole-image normalisation statistics
measured layer by layer, and the distance to untiled processing on a small random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import wetok.codec as codec
from support import TINY, TINY_GD, photo
from wetok import Tokenizer, TokenizerConfig
from wetok.errors import WetokError
from wetok.images import to_tensor
from wetok.tiling import TileSpec, axis_windows, decode_tiled, encode_latent_tiled, encode_tiled, owned_spans, run_tiled


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


def test_blending_reproduces_a_field_exactly():
    field = torch.randn(1, 2, 9 * 3, 13 * 3)

    def cut(windows):
        return torch.cat([field[:, :, r.start * 3 : r.stop * 3, c.start * 3 : c.stop * 3] for r, c in windows])

    out = run_tiled(cut, (9, 13), 4, 1, 3, 2)
    assert torch.allclose(out, field, atol=1e-6)


class PointwiseNet(nn.Module):
    """1x1 convolutions and GroupNorms (no border effects), declared in the reverse of the order
    they run in, with one GroupNorm without affine (as inside the adaptive norms)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.norm2 = nn.GroupNorm(2, 8, eps=1e-6, affine=False)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.norm1 = nn.GroupNorm(4, 8, eps=1e-6)
        self.conv1 = nn.Conv2d(4, 8, 1)
        nn.init.normal_(self.norm1.weight)
        nn.init.normal_(self.norm1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norm1(self.conv1(x)))
        return self.conv3(torch.relu(self.norm2(self.conv2(x))))


def contrasted_field() -> torch.Tensor:
    """(1, 4, 24, 20) with regions of very different statistics."""
    torch.manual_seed(0)
    field = torch.randn(1, 4, 24, 20)
    field[:, :, :12] *= 5
    field[:, :, :, :8] += 3
    return field


@torch.no_grad()
def test_whole_image_statistics_make_a_pointwise_network_exact():
    net, field = PointwiseNet(), contrasted_field()

    def run(windows):
        return net(torch.cat([field[:, :, r, c] for r, c in windows]))

    whole = run_tiled(run, (24, 20), 8, 2, 1, 4, network=net)
    alone = run_tiled(run, (24, 20), 8, 2, 1, 4)
    want = net(field)
    assert (whole - want).abs().max().item() < 1e-5
    assert (alone - want).abs().max().item() > 0.5
    assert not net.norm1._forward_hooks and not net.norm1._forward_pre_hooks  # hooks removed


@torch.no_grad()
def test_statistics_passes_stop_at_the_layer_being_measured():
    net, field = PointwiseNet(), contrasted_field()
    runs = {name: 0 for name in ("conv1", "conv2", "conv3", "norm2")}
    for name in runs:
        getattr(net, name).register_forward_hook(lambda *_, name=name: runs.__setitem__(name, runs[name] + 1))
    calls = []

    def run(windows):
        calls.append(dict(runs))
        return net(torch.cat([field[:, :, r, c] for r, c in windows]))

    run_tiled(run, (24, 20), 8, 2, 1, 4, network=net)
    n = 4 * 3  # windows: 4 rows x 3 columns
    assert len(axis_windows(24, 8, 2)) * len(axis_windows(20, 8, 2)) == n
    # pass 1 (norm1 measured): only conv1 runs; pass 2 (norm2): conv1, norm1, conv2; then the final pass.
    assert len(calls) == 3 * n
    assert calls[n] == {"conv1": n, "conv2": 0, "conv3": 0, "norm2": 0}
    assert calls[2 * n] == {"conv1": 2 * n, "conv2": n, "conv3": 0, "norm2": 0}
    assert runs == {"conv1": 3 * n, "conv2": 2 * n, "conv3": n, "norm2": n}


def test_tile_statistics_mode_is_checked():
    with pytest.raises(WetokError, match="tile statistics must be 'image' or 'window', got 'pooled'"):
        TileSpec(512, 128, "pooled")  # type: ignore[arg-type]


def test_one_window_equals_untiled():
    m = model()
    image = to_tensor(photo(32, 48))
    latent = m.encode_latent(image)
    assert (encode_latent_tiled(m, image, TileSpec(256, 64)) - latent).abs().max().item() < 1e-4
    tokens = m.encode(image)
    assert (decode_tiled(m, tokens, TileSpec(256, 64)) - m.decode(tokens)).abs().max().item() < 1e-4


def psnr(a, b):
    return 10 * np.log10(4 / ((a - b) ** 2).mean().item())


@pytest.mark.parametrize("config, decoded_db", [(TINY, 31.7), (TINY_GD, 27.0)], ids=["plain", "generative"])
def test_whole_image_statistics_bring_tiles_close_to_untiled(config, decoded_db):
    """Measured: PSNR(untiled, tiled) of the decoded picture is 31.7 dB (plain) and 27.0 dB
    (generative) with whole-image statistics, 24.5 and 21.8 dB with per-window ones; what is left
    are the windows' border effects (a tiny random model's receptive field is large for 16-cell
    windows)."""
    m = model(config)
    image = to_tensor(np.concatenate([photo(64, 48, 1), photo(64, 48, 2) // 3], 1))  # a bright and a dark half
    f = m.downsample
    latent = m.encode_latent(image)
    tokens = m.codes_to_tokens(latent)
    whole, alone = TileSpec(16 * f, 4 * f, "image"), TileSpec(16 * f, 4 * f, "window")
    tiled_latent = encode_latent_tiled(m, image, whole)
    alone_latent = encode_latent_tiled(m, image, alone)
    assert (tiled_latent - latent).abs().mean() < 0.4 * (alone_latent - latent).abs().mean()
    assert ((tiled_latent > 0) == (latent > 0)).float().mean() > 0.95
    assert torch.equal(encode_tiled(m, image, whole), m.codes_to_tokens(tiled_latent))
    noise = None if not config.generative else torch.randn(1, config.latent_channels, *tokens.shape[1:3])
    untiled = m.decode(tokens, noise=noise)
    tiled = decode_tiled(m, tokens, whole, noise=noise)
    tiled_alone = decode_tiled(m, tokens, alone, noise=noise)
    assert psnr(tiled, untiled) > decoded_db - 1
    assert psnr(tiled, untiled) > psnr(tiled_alone, untiled) + 4


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
    spec = TileSpec(32, 8, "image")
    tiling = codec.Codec(m, size=0, tile=spec)
    prepared = tiling.prepare(Image.fromarray(photo(64, 64)), "x")
    monkeypatch.setattr(codec, "AUTO_TILE_PIXELS", 32 * 32)
    (tiled,) = tiling.encode_prepared([prepared])
    assert torch.equal(tiled.tokens, encode_tiled(m, prepared.pixels, spec))
    (plain,) = codec.Codec(m, size=0, tile=None).encode_prepared([prepared])
    assert torch.equal(plain.tokens, m.encode(prepared.pixels))
    pictures = tiling.decode(tiled)
    assert torch.equal(pictures, decode_tiled(m, tiled.tokens, spec))


def test_statistics_passes_show_a_progress_bar_when_asked(capsys):
    torch.manual_seed(0)
    model = Tokenizer(TokenizerConfig(channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8, groups=2)).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    quiet = encode_tiled(model, image, TileSpec(16, 4, progress=False))
    assert "tile statistics" not in capsys.readouterr().err
    shown = encode_tiled(model, image, TileSpec(16, 4, progress=True))
    err = capsys.readouterr().err
    layers = sum(isinstance(m, torch.nn.GroupNorm) for m in model.encoder.modules())
    assert "tile statistics" in err and f"0/{layers} " in err  # one step per GroupNorm layer
    assert torch.equal(quiet, shown)
