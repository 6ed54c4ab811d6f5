"""The PatchGAN discriminator (pix2pix's N-layer discriminator) used by WeTok's GAN loss.

Parameter names (`main.0.weight`, `main.3.running_mean`, ...) are those of the released
checkpoints' `loss.discriminator.*` entries, so a released discriminator loads without renaming.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Convolutional PatchGAN: image (B, 3, H, W) in [-1, 1] -> logits (B, 1, H', W').

    `layers` stride-2 4x4 convolutions (the first with bias and no norm, the others BatchNorm'd),
    then one stride-1 block and a 4x4 convolution to one logit per patch. Widths are
    `filters * min(2**n, 8)`. For 256x256 inputs and 3 layers the output is 30x30 logits.
    Weights start as N(0, 0.02), BatchNorm scales as N(1, 0.02), biases 0 (the usual GAN init).
    """

    def __init__(self, in_channels: int = 3, filters: int = 64, layers: int = 3) -> None:
        super().__init__()
        if filters <= 0 or layers <= 0:
            raise ValueError(f"filters and layers must be positive, got {filters}, {layers}")
        modules: list[nn.Module] = [nn.Conv2d(in_channels, filters, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1
            modules += [
                nn.Conv2d(filters * prev, filters * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(filters * mult),
                nn.LeakyReLU(0.2, True),
            ]
        modules.append(nn.Conv2d(filters * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*modules)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialise: convolutions N(0, 0.02), BatchNorm weight N(1, 0.02), biases 0, stats reset."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)
