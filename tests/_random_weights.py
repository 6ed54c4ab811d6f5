"""Random-weight stand-ins for the pretrained metric networks, written in their standard file
layouts so that the real loading code runs (no pretrained weights exist on this machine)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wetok.lpips import BACKBONE_FILES, alexnet_features, vgg16_features
from wetok.metrics.inception import FEATURE_DIM, WEIGHTS_FILE, FIDInceptionV3


def write_lpips_backbone(directory: Path, net: str, seed: int = 0) -> Path:
    """torchvision's layout (`features.*`, plus a classifier entry that loaders must ignore)."""
    torch.manual_seed(seed)
    features = vgg16_features() if net == "vgg" else alexnet_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(7)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / BACKBONE_FILES[net]
    torch.save(state, path)
    return path


def calibrated_inception(seed: int = 0) -> FIDInceptionV3:
    """A random FID Inception whose BatchNorm statistics come from random images, so that its
    features differ between images (plain random BatchNorm statistics give near-constant ones)."""
    torch.manual_seed(seed)
    model = FIDInceptionV3(pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: the running stats become this batch's
    nn.Module.train(model, True)
    with torch.no_grad():
        model(torch.rand(2, 3, 40, 40) * 2 - 1)
    nn.Module.train(model, False)
    return model


def write_inception(directory: Path, seed: int = 0) -> Path:
    """pytorch-fid's file layout, including the 1008-way fc layer that the feature network ignores."""
    state = dict(calibrated_inception(seed).state_dict())
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, FEATURE_DIM), torch.zeros(1008)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / WEIGHTS_FILE)
    return directory / WEIGHTS_FILE
