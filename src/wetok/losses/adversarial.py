"""Adversarial loss terms: hinge discriminator loss, LeCAM regularisation, non-saturating
generator loss and the adaptive generator weight.

Logits are float tensors of any shape (PatchGAN: (B, 1, H', W')); results are float32 scalars.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def non_saturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the fake logits against the label "real": mean(softplus(-fake))."""
    fake = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class LeCAM(nn.Module):
    """LeCAM regularisation (Tseng et al. 2021) with exponential moving averages of the logits.

    `forward(real, fake)` first updates the averages of mean(real) and mean(fake) (decay `decay`,
    both starting at 0), then returns mean(relu(real - ema_fake)**2) + mean(relu(ema_real - fake)**2).
    The averages are buffers, so they travel with the module's state dict (and checkpoints).
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCAM decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros((), dtype=torch.float32))
        self.register_buffer("ema_fake", torch.zeros((), dtype=torch.float32))

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real, fake = real_logits.float(), fake_logits.float()
        with torch.no_grad():
            self.ema_real.mul_(self.decay).add_(real.mean() * (1 - self.decay))
            self.ema_fake.mul_(self.decay).add_(fake.mean() * (1 - self.decay))
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()


def adaptive_gan_weight(
    reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor, *, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's adaptive weight: ||d rec / d W|| / (||d gan / d W|| + 1e-4), clamped to [0, max_weight].

    `last_layer` is the decoder's output convolution weight W. The result is detached.
    """
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
