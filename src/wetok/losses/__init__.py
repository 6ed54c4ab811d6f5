"""Training losses: the PatchGAN discriminator, adversarial terms and pixel losses (the perceptual
loss is LPIPS, `wetok.metrics.lpips`).

Images are float (B, 3, H, W) in [-1, 1]; every loss is a float32 scalar unless stated otherwise.
"""

from .adversarial import (
    LeCAM,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    non_saturating_generator_loss,
)
from .discriminator import PatchDiscriminator
from .reconstruction import l1_loss, l2_loss

__all__ = [
    "LeCAM",
    "PatchDiscriminator",
    "adaptive_gan_weight",
    "hinge_discriminator_loss",
    "l1_loss",
    "l2_loss",
    "non_saturating_generator_loss",
]
