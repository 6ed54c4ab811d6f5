"""The FID InceptionV3: same features as pytorch-fid's network with the same (random) weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from wetok.errors import WeightsNotFoundError
from wetok.metrics.inception import FEATURE_DIM, WEIGHTS_FILE, FIDInceptionV3


@pytest.fixture(scope="module")
def weight_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch home whose hub cache holds a random-weight FID Inception file."""
    home = tmp_path_factory.mktemp("torch_home")
    _random_weight_file(home / "hub" / "checkpoints")
    return home


def _random_weight_file(directory: Path) -> Path:
    """pytorch-fid's file layout (including the 1008-way fc layer) with random weights whose
    BatchNorm statistics are calibrated on random images, so that features vary between images."""
    torch.manual_seed(0)
    model = FIDInceptionV3(pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: running stats = this batch's stats
    nn.Module.train(model, True)
    with torch.no_grad():
        model(torch.rand(2, 3, 40, 40) * 2 - 1)
    state = dict(model.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, FEATURE_DIM), torch.zeros(1008)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    return directory / WEIGHTS_FILE


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_matches_pytorch_fid(weight_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytorch_fid = pytest.importorskip("pytorch_fid.inception", reason="pytorch-fid is a test dependency")
    monkeypatch.setenv("TORCH_HOME", str(weight_dir))  # both look in torch hub's cache
    ours = FIDInceptionV3()
    ref = pytorch_fid.InceptionV3([pytorch_fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
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
