"""LPIPS v0.1 (Zhang et al. 2018), the perceptual distance of WeTok's training and evaluation,
computed by the `lpips` package (pinned 0.1.4): `lpips.LPIPS(net=..., version="0.1")`.

wetok only finds and loads the weight files, because the package would otherwise download them:

    backbone: torchvision's ImageNet files `vgg16-397923af.pth` / `alexnet-owt-7be5be79.pth`, from
        an explicit path or torch hub's cache (`$TORCH_HOME/hub/checkpoints/`), never downloaded.
        The package is built with `pnet_rand=True` (it asks torchvision for no weights) and the
        file's `features.N.*` tensors go into its `net.sliceK.N.*` layers.
    heads: LPIPS v0.1 `vgg.pth` / `alex.pth` (keys `linK.model.1.weight`), from an explicit path
        or the ones the package ships (`lpips/weights/v0.1/`).

Both are read with `torch.load(weights_only=True)` and loaded strictly (`wetok.weights.load_strict`:
one `CheckpointError` naming missing / unexpected / mis-shaped keys). The package's own head
loading (`model_path=`) is not used: it loads with `strict=False`, so a file lacking heads would
silently leave random ones. With pretrained weights the package's network is built on the meta
device (torchvision's VGG16 otherwise initialises its 120M-parameter classifier, which LPIPS
throws away: 2.7 s and 0.5 GB), and the loaded tensors take the place of the meta ones.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import lpips as lpips_package
import torch
from torch import nn

from ..errors import WeightsNotFoundError
from ..weights import load_strict, locate_weights, read_state_dict

Net = Literal["vgg", "alex"]

BACKBONE_FILES: dict[str, str] = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
"""torchvision's standard ImageNet weight files (as torch hub caches them)."""

HEAD_FILES: dict[str, str] = {"vgg": "vgg.pth", "alex": "alex.pth"}
"""LPIPS v0.1 linear-head files (as the `lpips` package ships them under `weights/v0.1/`)."""

_BACKBONE_NAMES: dict[str, str] = {"vgg": "VGG16", "alex": "AlexNet"}


def lpips_package_heads(net: Net) -> Path | None:
    """The v0.1 head file (`vgg.pth` / `alex.pth`) shipped by the installed `lpips` package, or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / HEAD_FILES[net]
    return path if path.is_file() else None


def _build_package_lpips(net: Net, *, on_meta: bool) -> lpips_package.LPIPS:
    """`lpips.LPIPS(net, version 0.1)` with random heads and backbone (nothing read or downloaded);
    on the meta device (no memory, no initialisation) when `on_meta`, except its input scaling."""
    with warnings.catch_warnings():
        # lpips 0.1.4 calls torchvision's deprecated `vgg16(pretrained=False)`
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.models\._utils")
        if on_meta:
            with torch.device("meta"):
                model = lpips_package.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        else:
            model = lpips_package.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    if on_meta:
        model.scaling_layer = lpips_package.ScalingLayer()  # fixed constants, not in any weight file
    return model


def backbone_state(package_net: nn.Module, torchvision_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's `features.N.*` tensors renamed to the package's `sliceK.N.*` (K: the LPIPS
    stage holding layer N); `features.*` entries that no slice holds keep their name, so that a
    strict load reports them as unexpected. Other entries (`classifier.*`) are left out."""
    layer_slice = {name.split(".")[1]: name.split(".")[0] for name in package_net.state_dict()}  # "5" -> "slice2"
    state: dict[str, torch.Tensor] = {}
    for key, tensor in torchvision_state.items():
        if not key.startswith("features."):
            continue
        layer = key.split(".")[1]
        state[f"{layer_slice[layer]}.{key[len('features.'):]}" if layer in layer_slice else key] = tensor
    return state


def heads_state(head_file_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A v0.1 head file's `linK.model.1.weight` renamed to `K.model.1.weight` (the package's
    `lins` list); other entries keep their name (a strict load reports them as unexpected)."""
    return {re.sub(r"^lin(\d+)\.", r"\1.", key): tensor for key, tensor in head_file_state.items()}


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a VGG16 or AlexNet backbone (the `lpips` package); frozen, always
    in eval mode.

    Args:
        net: "vgg" (the training loss and `lpips_vgg`) or "alex" (`lpips_alex`).
        backbone_weights: torchvision weight file (or a folder holding it); default: torch hub cache.
        head_weights: LPIPS v0.1 head file (or a folder holding it); default: the `lpips` package's.
        pretrained: False gives random weights (backbone: PyTorch's default init; heads: absolute
            values of it, so that distances stay >= 0): for plumbing tests only, never for scores.

    Raises:
        WeightsNotFoundError: a weight file is missing (the message names it and where to put it).
        CheckpointError: a weight file that is unreadable or does not fit.
    """

    def __init__(
        self,
        net: Net = "vgg",
        *,
        backbone_weights: str | Path | None = None,
        head_weights: str | Path | None = None,
        pretrained: bool = True,
    ) -> None:
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
        self.net = net
        if pretrained:
            # find both files before building anything: a missing one is a quick, clear error
            backbone = locate_weights(
                BACKBONE_FILES[net], backbone_weights,
                what=f"LPIPS {_BACKBONE_NAMES[net]} backbone (torchvision ImageNet weights)",
                option="backbone_weights=... / --weights-dir",
            )
            heads = self._locate_heads(head_weights)
            self.model = _build_package_lpips(net, on_meta=True)
            load_strict(self.model.net, backbone_state(self.model.net, read_state_dict(backbone)), str(backbone))
            load_strict(self.model.lins, heads_state(read_state_dict(heads)), str(heads))
        else:
            self.model = _build_package_lpips(net, on_meta=False)
            with torch.no_grad():
                for lin in self.model.lins:
                    for p in lin.parameters():
                        p.abs_()
        self.requires_grad_(False)
        self.eval()

    def _locate_heads(self, explicit: str | Path | None) -> Path:
        filename = HEAD_FILES[self.net]
        if explicit is None:
            explicit = lpips_package_heads(self.net)
            if explicit is None:
                raise WeightsNotFoundError(
                    f"LPIPS v0.1 {self.net} heads: {filename} not found in the installed lpips package "
                    f"(lpips/weights/v0.1/{filename}); reinstall lpips==0.1.4 or pass its path (head_weights=... / --weights-dir)"
                )
        return locate_weights(filename, explicit, what=f"LPIPS v0.1 {self.net} heads", option="head_weights=... / --weights-dir")

    def train(self, mode: bool = True) -> LPIPS:
        """LPIPS has no train mode (the package's heads have dropout): it stays in eval mode
        whatever a parent module asks."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of float images x, y (B, 3, H, W) in [-1, 1] -> float (B,) >= 0,
        differentiable in x and y (`lpips.LPIPS.forward(x, y)` without `normalize`)."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x and y must both be (B, 3, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.model(x, y).flatten()
