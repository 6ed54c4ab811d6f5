"""LPIPS v0.1 (Zhang et al. 2018), the perceptual distance used by WeTok's training and evaluation.

    d(x, y) = sum over stages s of  mean over (h, w) of  sum over c of  w_s[c] * (f_s(x) - f_s(y))[c, h, w]**2

where f_s is the s-th ReLU stage of VGG16 or AlexNet (torchvision's layer layout) applied to the
scaled input (x - shift) / scale, normalised to unit length over channels (eps 1e-10), and w_s
are the non-negative linear "heads" of LPIPS v0.1 (1x1 convolutions without bias).

Weights (nothing is downloaded):
    backbone: torchvision's ImageNet files `vgg16-397923af.pth` / `alexnet-owt-7be5be79.pth`, from
        an explicit path or torch hub's cache (`$TORCH_HOME/hub/checkpoints/`).
    heads: LPIPS v0.1 `vgg.pth` / `alex.pth` (keys `lin0.model.1.weight` ...), from an explicit
        path or from the `lpips` PyPI package, which ships them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .errors import WeightsNotFoundError
from .pretrained import load_exactly, locate_weights, read_state_dict

Net = Literal["vgg", "alex"]

BACKBONE_FILES: dict[str, str] = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
"""torchvision's standard ImageNet weight files (as torch hub caches them)."""

HEAD_FILES: dict[str, str] = {"vgg": "vgg.pth", "alex": "alex.pth"}
"""LPIPS v0.1 linear-head files (as the `lpips` package ships them under `weights/v0.1/`)."""

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

# Layer indices (in torchvision's `features`) after which each of the five stages ends.
_STAGE_ENDS: dict[str, tuple[int, ...]] = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}
_STAGE_CHANNELS: dict[str, tuple[int, ...]] = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features` layout (13 conv3x3+ReLU, 5 max-pools), randomly initialised."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features` layout (5 conv+ReLU, 3 max-pools), randomly initialised."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def lpips_package_heads(net: Net) -> Path | None:
    """The v0.1 head file shipped by the installed `lpips` package, or None (package not installed)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / HEAD_FILES[net]
    return path if path.is_file() else None


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a VGG16 or AlexNet backbone; frozen, always in eval mode.

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
        if net not in _STAGE_ENDS:
            raise ValueError(f"net must be 'vgg' or 'alex', got {net!r}")
        self.net = net
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = vgg16_features() if net == "vgg" else alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _STAGE_CHANNELS[net])
        if pretrained:
            self._load_backbone(backbone_weights)
            self._load_heads(head_weights)
        else:
            with torch.no_grad():
                for head in self.heads:
                    head.weight.abs_()
        self.requires_grad_(False)
        self.eval()

    def _load_backbone(self, explicit: str | Path | None) -> None:
        name = "VGG16" if self.net == "vgg" else "AlexNet"
        path = locate_weights(
            BACKBONE_FILES[self.net], explicit, what=f"LPIPS {name} backbone (torchvision ImageNet weights)",
            option="backbone_weights=...",
        )
        state = read_state_dict(path)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        load_exactly(self.features, features, str(path))

    def _load_heads(self, explicit: str | Path | None) -> None:
        filename = HEAD_FILES[self.net]
        if explicit is None:
            packaged = lpips_package_heads(self.net)
            if packaged is None:
                raise WeightsNotFoundError(
                    f"LPIPS v0.1 {self.net} heads: {filename} not found; `pip install lpips` (it ships "
                    f"lpips/weights/v0.1/{filename}) or pass its path (head_weights=...)"
                )
            explicit = packaged
        path = locate_weights(filename, explicit, what=f"LPIPS v0.1 {self.net} heads", option="head_weights=...")
        state = read_state_dict(path)
        heads = {f"{i}.weight": state[f"lin{i}.model.1.weight"] for i in range(5) if f"lin{i}.model.1.weight" in state}
        load_exactly(self.heads, heads, str(path))

    def train(self, mode: bool = True) -> "LPIPS":
        """LPIPS has no train mode: it stays in eval mode whatever a parent module asks."""
        return super().train(False)

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU stage outputs (B, C_s, H_s, W_s) of scaled images (B, 3, H, W) in [-1, 1]."""
        h = (images - self.shift.to(images.dtype)) / self.scale.to(images.dtype)
        ends = _STAGE_ENDS[self.net]
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features[: ends[-1] + 1]):
            h = layer(h)
            if i in ends:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of float images x, y (B, 3, H, W) in [-1, 1] -> (B,), differentiable in x and y."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x and y must both be (B, 3, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
        both = self.stages(torch.cat([x, y]))
        total = x.new_zeros(x.shape[0])
        for feats, head in zip(both, self.heads):
            fx, fy = feats.chunk(2)
            fx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            fy = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total = total + head((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return total
