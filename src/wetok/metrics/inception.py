"""The InceptionV3 network of FID (TensorFlow's 2015-12-05 graph), as the `pytorch-fid` package
(pinned 0.3.0) ports it: its features are those of `pytorch_fid.inception.InceptionV3([3])`.

Why the construction is wetok's: pytorch-fid's `fid_inception_v3()` (and so `InceptionV3`)
always fetches its weights with `load_state_dict_from_url(FID_WEIGHTS_URL)`: it cannot take an
explicit file, and on a machine without the file in torch hub's cache it tries to download. So
`FIDInceptionV3` builds the same network the way `fid_inception_v3()` does, from the package's
own parts: torchvision's `Inception3(num_classes=1008, aux_logits=False, init_weights=False)` with
pytorch-fid's `FIDInceptionA` (Mixed_5b-d), `FIDInceptionC` (Mixed_6b-e), `FIDInceptionE_1`
(Mixed_7b) and `FIDInceptionE_2` (Mixed_7c) blocks, and loads pytorch-fid's weight file
`pt_inception-2015-12-05-6726825d.pth` strictly (every key, the 1008-way `fc` included, as
pytorch-fid does) from an explicit path or torch hub's cache (`$TORCH_HOME/hub/checkpoints/`).
The forward pass is `InceptionV3`'s for output block 3 (resize, rescale, the four blocks, average
pool). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_fid.inception import (
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE_1,
    FIDInceptionE_2,
)
from torch import nn
from torchvision.models.inception import Inception3

from ..weights import load_strict, locate_weights, read_state_dict

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
"""pytorch-fid's weight file (the name torch hub caches it under)."""
FEATURE_DIM = 2048
"""Dimension of the pool features (pytorch-fid's block 3)."""
INPUT_SIZE = 299
"""Images are resized to INPUT_SIZE x INPUT_SIZE (bilinear), as pytorch-fid does."""


def fid_inception_network() -> Inception3:
    """pytorch-fid's `fid_inception_v3()` without its weight download: random (PyTorch default
    init) weights in the layout of `pt_inception-2015-12-05-6726825d.pth`."""
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


class FIDInceptionV3(nn.Module):
    """InceptionV3 to the 2048-d pool features, with pytorch-fid's preprocessing; frozen, eval mode.

    Args:
        weights: the weight file (or a folder holding it); default: torch hub's cache.
        pretrained: False gives random weights, for plumbing tests only.

    Attributes:
        network: the torchvision `Inception3` with pytorch-fid's blocks; its `state_dict()` has
            the layout of pytorch-fid's weight file.

    Raises:
        WeightsNotFoundError: the weight file is missing (the message names it and where to put it).
        CheckpointError: a file that is unreadable or does not fit.
    """

    def __init__(self, weights: str | Path | None = None, *, pretrained: bool = True) -> None:
        super().__init__()
        path = None
        if pretrained:  # find the file before building the network: a missing one is a quick error
            path = locate_weights(WEIGHTS_FILE, weights, what="FID InceptionV3 weights", option="--weights-dir / weights=...")
        self.network = fid_inception_network()
        if path is not None:
            load_strict(self.network, read_state_dict(path), str(path))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """The network stays in eval mode (BatchNorm uses its running statistics)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, H, W) in [-1, 1], any size -> float (B, 2048) pool features.

        Equal to `pytorch_fid.inception.InceptionV3([3])((images + 1) / 2)[0].flatten(1)`: bilinear
        resize of (images + 1) / 2 to 299x299 (align_corners False), scaled back to [-1, 1].
        """
        n = self.network
        x = F.interpolate((images + 1) / 2, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)  # block 0
        x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)  # block 1
        for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
                      n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):  # blocks 2 and 3
            x = block(x)
        return F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)
