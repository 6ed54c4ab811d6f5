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

`FIDInceptionV3.adm_features` is the other protocol of the same graph, that of OpenAI's ADM
evaluator (guided-diffusion `evaluations/evaluator.py`, gFID; `wetok.ar.gfid`): images as 0..255
values, TensorFlow 1's legacy bilinear resize to 299x299 (`tf1_resize_bilinear`), (x - 128) / 128,
and three outputs of one forward pass: `pool_3` (2048-d), the first 7 channels of `mixed_6/conv`
(the 1x1 branch of the third 17x17 block, Mixed_6d here; 7 * 17 * 17 = 2023-d, channels last) and
the logits `pool_3 @ W` of `softmax/logits/MatMul` (W = the file's `fc.weight` transposed; the
graph's MatMul has no bias, so `fc.bias` is not used).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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
SPATIAL_CHANNELS = 7
"""The ADM evaluator's sFID features: the first 7 channels of `mixed_6/conv` (17 x 17 each)."""
SPATIAL_DIM = SPATIAL_CHANNELS * 17 * 17
"""Dimension of the spatial (sFID) features: 2023."""
NUM_LOGITS = 1008
"""Classes of the graph's softmax (1000 ImageNet classes and 8 unused)."""


class ADMFeatures(NamedTuple):
    """The outputs of `FIDInceptionV3.adm_features` for a batch of B images, float32."""

    pool: torch.Tensor
    """(B, 2048) `pool_3`: FID, precision and recall."""
    spatial: torch.Tensor
    """(B, 2023) `mixed_6/conv[..., :7]`, flattened channels last (H, W, C order): sFID."""
    logits: torch.Tensor
    """(B, 1008) `pool @ fc.weight.T`, no bias: Inception Score (after a softmax)."""


def tf1_resize_bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1's `tf.image.resize_bilinear(align_corners=False)` (the Inception graph's
    `ResizeBilinear` op), for float (B, C, H, W) images -> (B, C, *size), in the input's dtype.

    The legacy formula has no half-pixel centres: output pixel i reads the source coordinate
    x = i * (in / out) (scale and product in float32, as TensorFlow), between pixels floor(x)
    and min(ceil(x), in - 1) with weight x - floor(x); as TensorFlow's kernel, along the
    columns first (top = tl + (tr - tl) * wx, bottom likewise), then along the rows
    (top + (bottom - top) * wy). PyTorch's `interpolate(align_corners=False)` uses half-pixel
    centres ((i + 0.5) * in / out - 0.5) and gives other pixels, hence this function; it is the
    formula of torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x`, written here in a
    few lines rather than adding that package (and its own Inception stack) for one function.
    """
    out = images
    for axis, new in ((3, size[1]), (2, size[0])):  # columns (W) first, then rows (H), as TensorFlow
        old = out.shape[axis]
        scale = torch.tensor(old, dtype=torch.float32) / torch.tensor(new, dtype=torch.float32)
        src = torch.arange(new, dtype=torch.float32) * scale
        low = src.floor()
        weight = (src - low).to(device=out.device, dtype=out.dtype)
        low_i = low.long().clamp(0, old - 1).to(out.device)
        high_i = src.ceil().long().clamp(max=old - 1).to(out.device)
        shape = [1] * out.ndim
        shape[axis] = new
        a, b = out.index_select(axis, low_i), out.index_select(axis, high_i)
        out = a + (b - a) * weight.view(shape)
    return out


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

    def adm_features(self, images: torch.Tensor, *, layout: str = "NHWC") -> ADMFeatures:
        """The ADM evaluator's features of a batch, in one forward pass (`adm_preprocess`, then the
        network): pool (B, 2048), spatial (B, 2023) and unbiased logits (B, 1008), float32.

        Args:
            images: (B, H, W, 3) ("NHWC", the `.npz` layout) or (B, 3, H, W) ("NCHW"), uint8 or
                float with values 0..255, any size; on the network's device or moved to it.
            layout: "NHWC" or "NCHW".

        The spatial features are the first 7 channels of Mixed_6d's output, which are those of its
        1x1 branch (`branch1x1`, concatenated first): TensorFlow's `mixed_6/conv`.
        """
        n = self.network
        weight = n.fc.weight
        x = adm_preprocess(images.to(weight.device), layout=layout)
        x = F.max_pool2d(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d):
            x = block(x)
        spatial = x[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)  # channels last, as TensorFlow's NHWC
        for block in (n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = block(x)
        pool = F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)
        return ADMFeatures(pool=pool, spatial=spatial, logits=pool @ weight.T)


def adm_preprocess(images: torch.Tensor, *, layout: str = "NHWC") -> torch.Tensor:
    """The Inception graph's input stage as the ADM evaluator feeds it: 0..255 images (uint8 or
    float, NHWC or NCHW) -> float32 (B, 3, 299, 299): `tf1_resize_bilinear` of the float values,
    then (x - 128) / 128."""
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}")
    channel_axis = 3 if layout == "NHWC" else 1
    if images.ndim != 4 or images.shape[channel_axis] != 3:
        raise ValueError(f"expected {layout} images with 3 channels, got shape {tuple(images.shape)}")
    x = images.to(torch.float32)
    if layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    x = tf1_resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE))
    return (x - 128) / 128
