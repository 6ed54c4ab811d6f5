"""The generator and discriminator objectives of both stages, as named loss terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..losses import (
    LeCAM,
    adaptive_gan_weight,
    hinge_discriminator_loss,
    l1_loss,
    l2_loss,
    non_saturating_generator_loss,
)
from ..tokenizer import TokenizerOutput
from .config import LossSection


@dataclass
class Terms:
    """The loss to backpropagate and its named parts (detached float32 scalars, for logging)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def generator_terms(
    images: torch.Tensor,
    out: TokenizerOutput,
    loss: LossSection,
    *,
    stage: int,
    perceptual: nn.Module | None,
    discriminator: nn.Module | None,
    last_layer: torch.Tensor | None = None,
) -> Terms:
    """Stage 1: l1_weight * l1 [+ l2_weight * l2] + perceptual + gan_weight * gan + entropy_weight * entropy
    + commitment_weight * commitment. Stage 2: the same without entropy and commitment.
    `discriminator` is None before the GAN starts; the l1 term is always logged, l2 when weighted.

    images and out.reconstruction: (B, 3, H, W) in [-1, 1]; every part is a float32 scalar.
    """
    recon = out.reconstruction
    parts: dict[str, torch.Tensor] = {"l1": l1_loss(images, recon)}
    reconstruction = loss.l1_weight * parts["l1"]
    if loss.l2_weight > 0:
        parts["l2"] = l2_loss(images, recon)
        reconstruction = reconstruction + loss.l2_weight * parts["l2"]
    if perceptual is not None and loss.perceptual_weight > 0:
        parts["perceptual"] = perceptual(images.float(), recon.float()).mean()
        reconstruction = reconstruction + loss.perceptual_weight * parts["perceptual"]
    total = reconstruction
    if discriminator is not None and loss.gan_weight > 0:
        parts["gan"] = non_saturating_generator_loss(discriminator(recon))
        weight = torch.tensor(loss.gan_weight, device=recon.device)
        if loss.adaptive_gan_weight and last_layer is not None:
            parts["gan_adaptive_weight"] = adaptive_gan_weight(reconstruction, parts["gan"], last_layer)
            weight = weight * parts["gan_adaptive_weight"]
        total = total + weight * parts["gan"]
    if stage == 1:
        q = out.quantizer
        if q.entropy_loss is None or q.commitment_loss is None:
            raise RuntimeError("stage-1 objective: the quantizer gave no entropy or commitment loss (it must be in training mode)")
        parts["entropy"] = q.entropy_loss
        parts["sample_entropy"] = q.sample_entropy  # type: ignore[assignment]
        parts["codebook_entropy"] = q.codebook_entropy  # type: ignore[assignment]
        parts["commitment"] = q.commitment_loss
        total = total + loss.entropy_weight * q.entropy_loss + loss.commitment_weight * q.commitment_loss
    parts["total"] = total
    return Terms(total=total, parts={k: v.detach().float() for k, v in parts.items()})


def discriminator_terms(
    discriminator: nn.Module, lecam: LeCAM, images: torch.Tensor, reconstructions: torch.Tensor, loss: LossSection
) -> Terms:
    """hinge(D(real), D(fake)) + lecam_weight * LeCAM; the fake images are detached.
    Real and fake pass through D separately (BatchNorm statistics per pass)."""
    real = discriminator(images)
    fake = discriminator(reconstructions.detach())
    parts = {"disc_hinge": hinge_discriminator_loss(real, fake)}
    total = parts["disc_hinge"]
    if loss.lecam_weight > 0:
        parts["lecam"] = lecam(real, fake)
        total = total + loss.lecam_weight * parts["lecam"]
    parts["disc_total"] = total
    parts["logits_real"] = real.float().mean()
    parts["logits_fake"] = fake.float().mean()
    return Terms(total=total, parts={k: v.detach().float() for k, v in parts.items()})
