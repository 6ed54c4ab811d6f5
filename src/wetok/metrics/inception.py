"""The InceptionV3 network of FID (TensorFlow's 2015-12-05 graph, as pytorch-fid ports it).

Built on torchvision's Inception blocks, with the four differences of the FID graph: the average
pools of the A, C and first E blocks leave the padding out of the average, and the last E block
pools with a maximum. Weights: `pt_inception-2015-12-05-6726825d.pth` (pytorch-fid's file), from
an explicit path or torch hub's cache; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from ..pretrained import load_exactly, locate_weights, read_state_dict

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FEATURE_DIM = 2048
INPUT_SIZE = 299


def _avg_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _FIDBlockA(InceptionA):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [b1, b5, b3, self.branch_pool(_avg_pool_without_padding(x))]


class _FIDBlockC(InceptionC):
    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return [b1, b7, d, self.branch_pool(_avg_pool_without_padding(x))]


class _FIDBlockE(InceptionE):
    def __init__(self, in_channels: int, *, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_without_padding(x)
        return [b1, b3, d, self.branch_pool(pooled)]


class FIDInceptionV3(nn.Module):
    """InceptionV3 to the 2048-d pool features, with pytorch-fid's preprocessing; frozen, eval mode.

    Args:
        weights: the weight file (or a folder holding it); default: torch hub's cache.
        pretrained: False gives random weights, for plumbing tests only.

    Raises:
        WeightsNotFoundError: the weight file is missing (the message names it and where to put it).
    """

    def __init__(self, weights: str | Path | None = None, *, pretrained: bool = True) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = _FIDBlockA(192, pool_features=32)
        self.Mixed_5c = _FIDBlockA(256, pool_features=64)
        self.Mixed_5d = _FIDBlockA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = _FIDBlockC(768, channels_7x7=128)
        self.Mixed_6c = _FIDBlockC(768, channels_7x7=160)
        self.Mixed_6d = _FIDBlockC(768, channels_7x7=160)
        self.Mixed_6e = _FIDBlockC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = _FIDBlockE(1280, max_pool=False)
        self.Mixed_7c = _FIDBlockE(2048, max_pool=True)
        if pretrained:
            path = locate_weights(WEIGHTS_FILE, weights, what="FID InceptionV3 weights", option="--weights-dir / weights=...")
            state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(("fc.", "AuxLogits."))}
            load_exactly(self, state, str(path))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FIDInceptionV3":
        """The network stays in eval mode (BatchNorm uses its running statistics)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, H, W) in [-1, 1], any size -> float (B, 2048) pool features.

        As pytorch-fid on (images + 1) / 2: bilinear resize to 299x299 (align_corners False), then
        scaled back to [-1, 1].
        """
        x = F.interpolate((images + 1) / 2, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))
