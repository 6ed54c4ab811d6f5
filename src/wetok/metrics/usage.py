"""Codebook usage and empirical token entropy, per quantizer group.

Counts how often each of the 2**b codes of each of the G groups occurs over a dataset. Counts are
integers, so adding them up across processes is exact in any order.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import WetokError


class TokenUsage:
    """Accumulates a (G, 2**b) int64 histogram of tokens.

    `update(tokens)` with int tokens (B, h, w, G) in [0, 2**b); `summary()` gives per-group usage
    (fraction of the codebook seen at least once), entropy in bits (of the empirical distribution,
    at most b) and, as the original evaluation reports it, the usage of the shared index space
    (codes seen in any group).
    """

    def __init__(self, groups: int, bits_per_group: int, device: torch.device | str = "cpu") -> None:
        if bits_per_group > 24:
            raise WetokError(f"token usage needs a 2**{bits_per_group} histogram per group; at most 24 bits supported")
        self.groups = groups
        self.bits_per_group = bits_per_group
        self.counts = torch.zeros(groups, 2**bits_per_group, dtype=torch.int64, device=device)

    def update(self, tokens: torch.Tensor) -> None:
        """Add int tokens (..., G) to the histogram."""
        if tokens.shape[-1] != self.groups:
            raise WetokError(f"tokens have {tokens.shape[-1]} groups, the histogram {self.groups}")
        flat = tokens.reshape(-1, self.groups).to(device=self.counts.device, dtype=torch.int64)
        size = self.counts.shape[1]
        offsets = torch.arange(self.groups, device=flat.device) * size
        self.counts += torch.bincount((flat + offsets).flatten(), minlength=self.groups * size).view(self.groups, size)

    def summary(self) -> dict[str, Any]:
        """JSON-able: {"codebook_size", "tokens_per_group", "groups": [{"used", "usage", "entropy_bits",
        "max_entropy_bits"}...], "usage_all_groups"}."""
        counts = self.counts.cpu().double()
        total = counts.sum(dim=1)
        groups = []
        for g in range(self.groups):
            n = float(total[g])
            p = counts[g][counts[g] > 0] / n if n > 0 else counts[g][:0]
            entropy = float(-(p * torch.log2(p)).sum()) if n > 0 else 0.0
            used = int((counts[g] > 0).sum())
            groups.append({
                "used": used,
                "usage": used / counts.shape[1],
                "entropy_bits": entropy,
                "max_entropy_bits": float(self.bits_per_group),
            })
        union = int((counts.sum(dim=0) > 0).sum())
        return {
            "codebook_size": int(counts.shape[1]),
            "tokens_per_group": int(total[0]) if self.groups else 0,
            "groups": groups,
            "usage_all_groups": union / counts.shape[1],
            "mean_entropy_bits": math.fsum(g["entropy_bits"] for g in groups) / max(1, self.groups),
        }
