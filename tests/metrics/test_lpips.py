"""LPIPS: wetok's wrapper equals the `lpips` package used directly with the same (random) backbone
weight file; weight files found, checked strictly, never downloaded; plumbing."""

from __future__ import annotations

from pathlib import Path

import lpips as lpips_ref
import pytest
import torch
import torchvision.models._api as torchvision_api

from support import write_lpips_backbone
from wetok.errors import CheckpointError, WeightsNotFoundError
from wetok.metrics.lpips import BACKBONE_FILES, LPIPS, lpips_package_heads


def _images(seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, size, size, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(3, 3, size, size, generator=g)).clamp(-1, 1)
    return x, y


@pytest.mark.filterwarnings("ignore::UserWarning")  # the lpips package uses a deprecated torchvision argument
@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_matches_reference_package(tmp_path: Path, net: str) -> None:
    backbone = write_lpips_backbone(tmp_path, net)
    ours = LPIPS(net, backbone_weights=backbone)  # heads from the installed package
    ref = lpips_ref.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    state = torch.load(backbone, weights_only=True)
    for name, tensor in ref.net.state_dict().items():  # net.sliceK.<torchvision index>.weight
        tensor.copy_(state["features." + name.split(".", 1)[1]])
    x, y = _images(1)
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert got.shape == (3,)
    assert torch.all(expected > 0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # The same numbers with the head file given explicitly (file or folder).
    heads = lpips_package_heads(net)
    assert heads is not None
    for explicit in (heads, heads.parent):
        again = LPIPS(net, backbone_weights=backbone, head_weights=explicit)
        torch.testing.assert_close(again(x, y), got, rtol=0, atol=0)


def test_backbone_found_in_torch_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    write_lpips_backbone(cache, "alex")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from_cache = LPIPS("alex")
    explicit = LPIPS("alex", backbone_weights=cache / BACKBONE_FILES["alex"])
    x, y = _images(2)
    torch.testing.assert_close(from_cache(x, y), explicit(x, y), rtol=0, atol=0)


def test_missing_files_name_file_and_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        LPIPS("vgg")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "\n" not in message
    with pytest.raises(WeightsNotFoundError, match="alex.pth"):
        LPIPS("alex", backbone_weights=write_lpips_backbone(tmp_path, "alex"), head_weights=tmp_path / "nowhere")


def test_wrong_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        LPIPS("vgg", backbone_weights=path)
    # Heads are loaded strictly too (the package's own loader would keep random ones silently).
    heads = lpips_package_heads("alex")
    assert heads is not None
    partial = {k: v for k, v in torch.load(heads, map_location="cpu", weights_only=True).items() if not k.startswith("lin4.")}
    torch.save(partial, tmp_path / "alex.pth")
    with pytest.raises(CheckpointError, match="do not fit.*missing"):
        LPIPS("alex", backbone_weights=write_lpips_backbone(tmp_path, "alex"), head_weights=tmp_path / "alex.pth")


def test_nothing_is_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", no_download)  # what torchvision calls
    for net in ("vgg", "alex"):
        LPIPS(net, backbone_weights=write_lpips_backbone(tmp_path, net))
        LPIPS(net, pretrained=False)


def test_random_plumbing_identity_gradient_and_frozen() -> None:
    torch.manual_seed(0)
    metric = LPIPS("alex", pretrained=False)
    x, y = _images(3)
    assert torch.all(metric(x, x) == 0)
    x = x.clone().requires_grad_(True)
    d = metric(x, y)
    assert torch.all(d > 0)
    d.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in metric.parameters())
    metric.train()
    assert not metric.training
    # Batch items are independent: one image alone gives its batch value.
    torch.testing.assert_close(metric(x[1:2].detach(), y[1:2]), d[1:2].detach(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError):
        metric(x, y[:2])
