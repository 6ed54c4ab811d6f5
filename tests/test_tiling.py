"""Tiled encoding/decoding: window layout, blending, whole-image normalisation statistics
measured layer by layer (resuming each window where its last pass stopped, in memory or spilled
to disk), and the distance to untiled processing on a small random model."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import wetok
import wetok.codec as codec
import wetok.tiling as tiling
from support import TINY, TINY_GD, photo, require_reference
from wetok import Tokenizer, TokenizerConfig
from wetok.errors import WetokError
from wetok.images import to_tensor
from wetok.nn.encoder import run_stages
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

    def cut(window):
        r, c = window
        return field[:, :, r.start * 3 : r.stop * 3, c.start * 3 : c.stop * 3]

    out = run_tiled(cut, (9, 13), 4, 1, 3, 2)
    assert torch.allclose(out, field, atol=1e-6)


class PointwiseNet(nn.Module):
    """1x1 convolutions and GroupNorms (no border effects), declared in the reverse of the order
    they run in, with one GroupNorm without affine (as inside the adaptive norms); three stages,
    the GroupNorms at the start of the second and third."""

    stage_runner = None

    def __init__(self) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.norm2 = nn.GroupNorm(2, 8, eps=1e-6, affine=False)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.norm1 = nn.GroupNorm(4, 8, eps=1e-6)
        self.conv1 = nn.Conv2d(4, 8, 1)
        nn.init.normal_(self.norm1.weight)
        nn.init.normal_(self.norm1.bias)

    def stages(self) -> list:
        return [self.conv1, lambda x: self.conv2(torch.relu(self.norm1(x))), lambda x: self.conv3(torch.relu(self.norm2(x)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stage_runner or run_stages)(self.stages(), x)


class Opaque(nn.Module):
    """A network without stages (no `stage_runner`): every statistics pass starts at its input."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


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

    def run(window):
        return net(field[:, :, window[0], window[1]])

    whole = run_tiled(run, (24, 20), 8, 2, 1, 4, network=net)
    alone = run_tiled(run, (24, 20), 8, 2, 1, 4)
    want = net(field)
    assert (whole - want).abs().max().item() < 1e-5
    assert (alone - want).abs().max().item() > 0.5
    assert torch.equal(whole, run_tiled(run, (24, 20), 8, 2, 1, 4, network=Opaque(net)))  # resumed = rerun from the input
    assert not net.norm1._forward_hooks and not net.norm1._forward_pre_hooks  # hooks removed
    assert "forward" not in vars(net.norm1) and "stage_runner" not in vars(net)


@pytest.mark.parametrize("staged", [False, True], ids=["from-input", "resumed"])
@torch.no_grad()
def test_statistics_passes_stop_at_the_layer_being_measured(staged):
    net, field = PointwiseNet(), contrasted_field()
    runs = {name: 0 for name in ("conv1", "conv2", "conv3", "norm2")}
    for name in runs:
        getattr(net, name).register_forward_hook(lambda *_, name=name: runs.__setitem__(name, runs[name] + 1))
    calls = []

    def run(window):
        calls.append(dict(runs))
        return net(field[:, :, window[0], window[1]])

    run_tiled(run, (24, 20), 8, 2, 1, 4, network=net if staged else Opaque(net))
    n = 4 * 3  # windows: 4 rows x 3 columns
    assert len(axis_windows(24, 8, 2)) * len(axis_windows(20, 8, 2)) == n
    assert len(calls) == 3 * n  # two statistics passes, then the final pass
    assert calls[n] == {"conv1": n, "conv2": 0, "conv3": 0, "norm2": 0}  # pass 1 (norm1 measured): only conv1
    if staged:  # pass 2 resumes at the second stage's input; the final pass at the third's
        assert calls[2 * n] == {"conv1": n, "conv2": n, "conv3": 0, "norm2": 0}
        assert runs == {"conv1": n, "conv2": n, "conv3": n, "norm2": n}
    else:  # pass 2 (norm2): conv1, norm1, conv2; the final pass: everything
        assert calls[2 * n] == {"conv1": 2 * n, "conv2": n, "conv3": 0, "norm2": 0}
        assert runs == {"conv1": 3 * n, "conv2": 2 * n, "conv3": n, "norm2": n}


def rerun_from_input(monkeypatch) -> None:
    """Make every statistics pass (and the final one) start at the network's input: tiling as it
    was before passes resumed, the reference the resumed passes must equal bit for bit."""
    monkeypatch.setattr(tiling.ActivationCache, "run", lambda self, stages, x: run_stages(stages, x))


def tiled_both_ways(m: Tokenizer, image: torch.Tensor, spec: TileSpec, monkeypatch, seed: int = 0):
    """(latent, decoded image) tiled with `spec`, resumed and rerun from the input."""
    noise = None
    if m.config.generative:
        h, w = image.shape[-2] // m.downsample, image.shape[-1] // m.downsample
        noise = torch.randn(1, m.config.latent_channels, h, w, generator=torch.Generator().manual_seed(seed))
    latent = encode_latent_tiled(m, image, spec)
    decoded = decode_tiled(m, m.codes_to_tokens(latent), spec, noise=noise)
    with monkeypatch.context() as patch:
        rerun_from_input(patch)
        want_latent = encode_latent_tiled(m, image, spec)
        want_decoded = decode_tiled(m, m.codes_to_tokens(want_latent), spec, noise=noise)
    return (latent, decoded), (want_latent, want_decoded)


def two_halves(height: int, width: int) -> torch.Tensor:
    """A bright and a dark photo side by side: float (1, 3, height, width) in [-1, 1]."""
    return to_tensor(np.concatenate([photo(height, width // 2, 1), photo(height, width // 2, 2) // 3], 1))


@pytest.mark.parametrize("config", [TINY, TINY_GD], ids=["plain", "generative"])
@pytest.mark.parametrize("layout", ["float32", "bfloat16-channels_last"])
def test_resumed_statistics_equal_rerunning_from_the_input(config, layout, monkeypatch):
    m = model(config)
    if layout != "float32":
        m.to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    f = m.downsample
    image = two_halves(10 * f, 12 * f)
    conv_in = []
    nhwc = torch.channels_last
    m.encoder.conv_in.register_forward_hook(lambda _m, _a, out: conv_in.append(out.is_contiguous(memory_format=nhwc)))
    (latent, decoded), (want_latent, want_decoded) = tiled_both_ways(m, image, TileSpec(4 * f, f), monkeypatch)
    assert torch.equal(latent, want_latent) and torch.equal(decoded, want_decoded)
    windows = len(axis_windows(10, 4, 1)) * len(axis_windows(12, 4, 1))
    layers = sum(isinstance(x, nn.GroupNorm) for x in m.encoder.modules())
    # resumed: the input conv runs with the first block (whose 2 GroupNorms are measured, then it
    # is passed) 3 times per window, and never again; rerun from the input: in every pass
    assert len(conv_in) == 3 * windows + windows * (layers + 1)
    assert all(conv_in) == (layout != "float32")  # the activations kept were channels_last
    assert decoded.dtype == torch.float32 and latent.abs().max() > 0.1


@pytest.mark.parametrize("case", ["tiny_d16", "tiny_d8_g8", "tiny_gd_d32"])
def test_resumed_statistics_equal_rerunning_from_the_input_on_the_reference_models(case, monkeypatch):
    reference = require_reference()
    m = wetok.load(reference / f"{case}.ckpt", config=reference / f"{case}.yaml")
    f = m.downsample
    image = two_halves(6 * f, 6 * f)
    (latent, decoded), (want_latent, want_decoded) = tiled_both_ways(m, image, TileSpec(4 * f, f), monkeypatch)
    assert torch.equal(latent, want_latent) and torch.equal(decoded, want_decoded)


def counted_spills(monkeypatch) -> tuple[list[int], list[int]]:
    """Bytes of every activation kept and of every one written to disk from now on; checks that
    those held in memory stay within the budget."""
    keeps: list[int] = []
    spills: list[int] = []
    spill, keep = tiling.ActivationCache._spill, tiling.ActivationCache._keep

    def counted(self, x):
        spills.append(x.untyped_storage().nbytes())
        return spill(self, x)

    def checked(self, index, x):
        keeps.append(x.untyped_storage().nbytes())
        keep(self, index, x)
        assert 0 <= self.held <= self.budget

    monkeypatch.setattr(tiling.ActivationCache, "_spill", counted)
    monkeypatch.setattr(tiling.ActivationCache, "_keep", checked)
    return keeps, spills


@pytest.mark.parametrize("budget", [0, 200_000])
def test_spilled_activations_give_the_same_result_and_are_removed(budget, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    m = model(TINY_GD)
    image = two_halves(32, 40)
    spec = TileSpec(16, 4, cache_bytes=budget)
    keeps, spills = counted_spills(monkeypatch)
    (latent, decoded), (want_latent, want_decoded) = tiled_both_ways(m, image, spec, monkeypatch)
    assert torch.equal(latent, want_latent) and torch.equal(decoded, want_decoded)
    # 3 x 3 windows, each kept at the input of every stage with GroupNorms but the first (whose
    # input is the network's): in the encoder 2 residual blocks and the head, in the decoder 2
    # (adaptive norm, residual block) stages and the head
    assert len(keeps) == 9 * (3 + 3)
    if budget == 0:
        assert spills == keeps
    else:  # some in memory, the rest on disk
        assert 0 < len(spills) < len(keeps) and sum(spills) > budget
    spills.clear()
    assert torch.equal(latent, encode_latent_tiled(m, image, TileSpec(16, 4)))  # the default budget holds them all
    assert spills == []
    assert list(tmp_path.iterdir()) == []  # the spill directory is gone


def test_spill_directory_is_removed_on_an_interrupt(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    m = model()
    calls = []

    def interrupt(*_):
        calls.append(1)
        if len(calls) == 10:
            assert len(list(tmp_path.glob("wetok-tiles-*/*.bin"))) > 0  # spilled windows on disk by now
            raise KeyboardInterrupt

    m.encoder.mid_block[0].register_forward_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        encode_tiled(m, two_halves(48, 48), TileSpec(16, 4, cache_bytes=0))
    assert list(tmp_path.iterdir()) == []
    assert "stage_runner" not in vars(m.encoder) and not any("forward" in vars(x) for x in m.encoder.modules())
    assert torch.equal(m.encoder(torch.zeros(1, 3, 8, 8)), m.encoder(torch.zeros(1, 3, 8, 8)))  # still usable


def test_cache_budget_and_spill_errors_are_one_line(monkeypatch, tmp_path):
    for bad in (-1, 1.5, True, "1G"):
        with pytest.raises(WetokError, match="tile cache budget must be a whole number of bytes >= 0, got"):
            TileSpec(cache_bytes=bad)  # type: ignore[arg-type]
    m = model()
    image = two_halves(32, 32)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file"))
    with pytest.raises(WetokError, match="cannot create a temporary directory for tile activations"):
        encode_tiled(m, image, TileSpec(16, 4, cache_bytes=0))
    gone = tmp_path / "gone"
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **_: str(gone))
    with pytest.raises(WetokError, match=f"cannot write tile activations to {gone}: No such file or directory") as error:
        encode_tiled(m, image, TileSpec(16, 4, cache_bytes=0))
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("field, bad", [("tile", 0), ("tile", -512), ("tile", 512.0), ("overlap", -5), ("overlap", True),
                                        ("overlap", "128")])
def test_tile_size_and_overlap_are_whole_pixels(field, bad):
    least = 1 if field == "tile" else 0
    with pytest.raises(WetokError, match=f"the tile {field} must be a whole number of pixels >= {least}, got"):
        TileSpec(**{field: bad})
    assert TileSpec(512, 0).cells(16) == (32, 1)  # no overlap asked: still one cell, so windows blend


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
