"""The FID InceptionV3: wetok's construction gives the features of pytorch-fid's `InceptionV3`, used
directly, with the same (random) weight file; the file is found, checked strictly, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pytorch_fid.inception import InceptionV3

from support import write_inception
from wetok.errors import CheckpointError, WeightsNotFoundError
from wetok.metrics.inception import FEATURE_DIM, WEIGHTS_FILE, FIDInceptionV3


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
