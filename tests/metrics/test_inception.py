"""The FID InceptionV3: wetok's construction gives the features of pytorch-fid's `InceptionV3`, used
directly, with the same (random) weight file; the file is found, checked strictly, never downloaded.
The ADM evaluator's protocol: TensorFlow 1's resize against a pixel loop and by hand, and the three
outputs of `adm_features` against torchvision's own forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_fid.inception import InceptionV3

from support import write_inception
from wetok.errors import CheckpointError, WeightsNotFoundError
from wetok.metrics.inception import (
    FEATURE_DIM,
    NUM_LOGITS,
    SPATIAL_CHANNELS,
    SPATIAL_DIM,
    WEIGHTS_FILE,
    FIDInceptionV3,
    adm_preprocess,
    tf1_resize_bilinear,
)


@pytest.fixture(scope="module")
def weight_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch home whose hub cache holds a random-weight FID Inception file."""
    home = tmp_path_factory.mktemp("torch_home")
    write_inception(home / "hub" / "checkpoints")
    return home


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_matches_pytorch_fid(weight_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(weight_dir))  # both look in torch hub's cache
    ours = FIDInceptionV3()
    ref = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()  # finds the cached file: no download
    images = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        got = ours(images)
        want = ref((images + 1) / 2)[0].flatten(1)  # the original evaluation feeds (x + 1) / 2
    assert got.shape == (2, FEATURE_DIM)
    assert (got[0] - got[1]).abs().max() > 1e-3  # informative features, not a constant
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in ours.parameters())


def test_missing_weights_message(tmp_path: Path, weight_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        FIDInceptionV3()
    assert WEIGHTS_FILE in str(info.value) and str(tmp_path / "hub" / "checkpoints") in str(info.value)
    FIDInceptionV3(weight_dir / "hub" / "checkpoints")  # an explicit folder holding the file


def test_explicit_file_and_wrong_file(tmp_path: Path, weight_dir: Path) -> None:
    path = weight_dir / "hub" / "checkpoints" / WEIGHTS_FILE
    state = torch.load(path, weights_only=True)
    loaded = FIDInceptionV3(path).network.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())  # every tensor of the file, fc included
    del state["Mixed_7c.branch_pool.conv.weight"]
    torch.save(state, tmp_path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="do not fit.*missing.*Mixed_7c"):
        FIDInceptionV3(tmp_path)


# ---- the ADM evaluator's protocol (gFID): TensorFlow 1's resize, three outputs of one pass ----------
def _tf1_resize_loop(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TensorFlow 1's legacy `resize_bilinear` (align_corners=False, no half-pixel centres), one
    output pixel at a time in float32: x = i * (in / out), neighbours floor(x) and min(ceil(x), in - 1)."""
    in_h, in_w = image.shape[-2:]
    f = np.float32

    def coords(i: int, n_in: int, n_out: int) -> tuple[int, int, np.float32]:
        x = f(i) * (f(n_in) / f(n_out))
        lo = int(np.floor(x))
        return max(lo, 0), min(int(np.ceil(x)), n_in - 1), f(x - f(lo))

    out = np.zeros(image.shape[:-2] + (out_h, out_w), dtype=f)
    for y in range(out_h):
        y0, y1, wy = coords(y, in_h, out_h)
        for x in range(out_w):
            x0, x1, wx = coords(x, in_w, out_w)
            tl, tr, bl, br = image[..., y0, x0], image[..., y0, x1], image[..., y1, x0], image[..., y1, x1]
            top = tl + (tr - tl) * wx
            bottom = bl + (br - bl) * wx
            out[..., y, x] = top + (bottom - top) * wy
    return out


def test_tf1_resize_by_hand() -> None:
    image = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])  # 2 x 2 -> 4 x 4: x = i / 2, the last column repeats
    want = torch.tensor([[0, 2, 4, 4], [4, 6, 8, 8], [8, 10, 12, 12], [8, 10, 12, 12]], dtype=torch.float32)
    assert torch.equal(tf1_resize_bilinear(image, (4, 4))[0, 0], want)
    half_pixel = F.interpolate(image, size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    assert half_pixel[0, 1] == 1.0  # PyTorch's half-pixel centres read x = 0.25 there: another resize
    row = torch.tensor([[[[10.0, 20.0, 30.0, 40.0, 50.0]]]])  # 5 -> 2 columns: x = 0 and 2.5
    assert tf1_resize_bilinear(row, (1, 2)).flatten().tolist() == [10.0, 35.0]


@pytest.mark.parametrize("size, out", [((7, 5), (13, 11)), ((64, 48), (299, 299)), ((300, 301), (299, 299)), ((5, 9), (3, 4))])
def test_tf1_resize_matches_a_pixel_loop(size: tuple[int, int], out: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(size) + sum(out))
    image = rng.integers(0, 256, size=(2, *size)).astype(np.float32)
    got = tf1_resize_bilinear(torch.from_numpy(image)[None], out)[0].numpy()
    want = _tf1_resize_loop(image, *out)
    np.testing.assert_array_equal(got, want)  # the same float32 operations in the same order


@pytest.fixture(scope="module")
def adm_net(weight_dir: Path) -> FIDInceptionV3:
    return FIDInceptionV3(weight_dir / "hub" / "checkpoints")


def test_adm_features_are_the_graph_outputs(adm_net: FIDInceptionV3) -> None:
    """Against torchvision's own forward of the same network on the preprocessed images, with
    hooks on the average pool (pool_3) and Mixed_6d's 1x1 branch (mixed_6/conv)."""
    images = torch.from_numpy(np.random.default_rng(5).integers(0, 256, size=(3, 36, 44, 3), dtype=np.uint8))
    seen: dict[str, torch.Tensor] = {}
    net = adm_net.network
    hooks = [net.avgpool.register_forward_hook(lambda m, i, o: seen.__setitem__("pool", o.flatten(1))),
             net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: seen.__setitem__("branch1x1", o))]
    try:
        with torch.no_grad():
            got = adm_net.adm_features(images)
            x = (tf1_resize_bilinear(images.permute(0, 3, 1, 2).float(), (299, 299)) - 128) / 128
            seen.clear()
            logits_with_bias = net._forward(x)[0]
    finally:
        for hook in hooks:
            hook.remove()
    assert got.pool.shape == (3, FEATURE_DIM) and got.spatial.shape == (3, SPATIAL_DIM) and got.logits.shape == (3, NUM_LOGITS)
    assert seen["branch1x1"].shape == (3, 192, 17, 17)
    torch.testing.assert_close(got.pool, seen["pool"], rtol=1e-5, atol=1e-6)
    spatial = seen["branch1x1"][:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).reshape(3, -1)  # NHWC, as TensorFlow
    torch.testing.assert_close(got.spatial, spatial, rtol=1e-5, atol=1e-6)
    assert (got.spatial[0] - got.spatial[1]).abs().max() > 1e-3
    torch.testing.assert_close(got.logits, logits_with_bias - net.fc.bias, rtol=1e-4, atol=1e-4)  # no bias
    assert (got.logits - logits_with_bias).abs().max() > 1e-4  # the bias is not used
    nchw = adm_net.adm_features(images.permute(0, 3, 1, 2).float(), layout="NCHW")
    torch.testing.assert_close(nchw.pool, got.pool)


def test_adm_preprocess_range_and_errors() -> None:
    values = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 4, 4, 3)
    x = adm_preprocess(values)
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert [x[0, c].unique().tolist() for c in range(3)] == [[-1.0], [0.0], [127 / 128]]
    with pytest.raises(ValueError, match="3 channels"):
        adm_preprocess(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="layout"):
        adm_preprocess(values, layout="HWC")
