"""The generator's training objective: cross-entropy of every sub-token, summed over the groups."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SubTokenLosses:
    """`total`: float32 scalar, the sum over the G sub-tokens of their mean cross-entropy (what
    training minimises, as the original). `per_group`: float32 (G,), each sub-token's mean
    cross-entropy (nats). `accuracy`: float32 (G,), the fraction of positions whose most likely
    value is the true one (no gradient)."""

    total: torch.Tensor
    per_group: torch.Tensor
    accuracy: torch.Tensor


def subtoken_losses(logits: torch.Tensor, tokens: torch.Tensor) -> SubTokenLosses:
    """Logits (B, N, G, V) of any float dtype (computed in float32) and true tokens int (B, N, G)
    in [0, V) -> the losses. Cross-entropy is averaged over the B x N positions of each group."""
    logits = logits.float()
    groups = logits.shape[2]
    per_group = torch.stack([F.cross_entropy(logits[:, :, g].flatten(0, 1), tokens[..., g].flatten()) for g in range(groups)])
    with torch.no_grad():
        accuracy = (logits.argmax(dim=-1) == tokens).float().mean(dim=(0, 1))
    return SubTokenLosses(total=per_group.sum(), per_group=per_group, accuracy=accuracy)
