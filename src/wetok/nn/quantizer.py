"""Group-wise lookup-free quantization (GQ), the WeTok quantizer.

Each of the C latent channels is quantized to its sign (+1 where the value is > 0, else -1). The
channels are split into G groups of b = C/G bits; the token of group g is the integer whose bit i
is 1 where channel g*b + i is positive (little-endian). Nothing enumerates the 2**C joint codes;
the entropy loss only needs the 2**b codes of one group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WetokError

ENTROPY_EPS = 1e-5


@dataclass
class QuantizerOutput:
    """What `GroupLFQ` returns.

    Attributes:
        quantized: float (B, C, h, w), values in {-1, +1}; carries a straight-through gradient to
            the input when the input requires grad.
        tokens: int64 (B, h, w, G), values in [0, 2**b).
        sample_entropy: scalar, mean entropy of each position-and-group's code distribution
            (training mode only, else None).
        codebook_entropy: scalar, entropy of the average code distribution (training mode only).
        entropy_loss: scalar, sample_weight * sample_entropy - codebook_weight * codebook_entropy.
        commitment_loss: scalar, mean squared distance of the input to its (detached) signs.
    """

    quantized: torch.Tensor
    tokens: torch.Tensor
    sample_entropy: torch.Tensor | None = None
    codebook_entropy: torch.Tensor | None = None
    entropy_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None


class GroupLFQ(nn.Module):
    """Group-wise lookup-free quantizer.

    Args:
        channels: C, latent channels.
        groups: G; C must be divisible by G, b = C/G bits per group (at most 24).
        sample_weight: weight of the per-sample entropy in `entropy_loss` (default 1).
        codebook_weight: weight of the codebook entropy in `entropy_loss` (default 1).
        temperature: softmax temperature over the 2**b codes of a group; logits are
            2 * <x_group, code> (default 0.01).
        per_group_codebook_entropy: how the codebook distribution is averaged.
            False (default, the released models' training): one distribution over the 2**b code
            indices, averaged over batch, positions and groups together.
            True (the paper's formula): one distribution per group, averaged over batch and
            positions; the codebook entropy is the mean of the G group entropies.

    Call on a latent float (B, C, h, w) to get a `QuantizerOutput`. The losses are computed in
    training mode only, in float32 whatever the input dtype.
    """

    def __init__(
        self,
        channels: int,
        groups: int,
        *,
        sample_weight: float = 1.0,
        codebook_weight: float = 1.0,
        temperature: float = 0.01,
        per_group_codebook_entropy: bool = False,
    ) -> None:
        super().__init__()
        if channels <= 0 or groups <= 0 or channels % groups:
            raise ValueError(f"channels ({channels}) must be a positive multiple of groups ({groups})")
        self.channels = channels
        self.groups = groups
        self.bits = channels // groups
        if self.bits > 24:
            raise ValueError(f"{self.bits} bits per group is too many (at most 24)")
        self.sample_weight = sample_weight
        self.codebook_weight = codebook_weight
        self.temperature = temperature
        self.per_group_codebook_entropy = per_group_codebook_entropy

    def bit_values(self, device: torch.device | str | None = None) -> torch.Tensor:
        """int64 (b,): 2**i for bit i, on `device`. Computed on demand rather than held as a
        buffer, so that a quantizer built on the meta device (a model checked against a weight
        file before any memory is allocated) holds nothing that the file does not restore."""
        return 2 ** torch.arange(self.bits, device=device)

    @property
    def codebook_size(self) -> int:
        """2**b, distinct tokens per group."""
        return 2**self.bits

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}, bits={self.bits}"

    # ---- tokens <-> codes ---------------------------------------------------------------------
    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Signs to tokens: float (B, C, h, w) (sign taken, > 0 is bit 1) -> int64 (B, h, w, G)."""
        if codes.dim() != 4 or codes.shape[1] != self.channels:
            raise WetokError(f"expected codes of shape (B, {self.channels}, h, w), got {tuple(codes.shape)}")
        bits = (codes > 0).permute(0, 2, 3, 1).reshape(*codes.shape[:1], *codes.shape[2:], self.groups, self.bits)
        return (bits.long() * self.bit_values(codes.device)).sum(dim=-1)

    def tokens_to_codes(self, tokens: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Tokens to signs: integer (B, h, w, G) in [0, 2**b) -> `dtype` (B, C, h, w) in {-1, +1}."""
        if tokens.dim() != 4 or tokens.shape[-1] != self.groups:
            raise WetokError(f"expected tokens of shape (B, h, w, {self.groups}), got {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise WetokError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.codebook_size):
            raise WetokError(
                f"tokens out of range: found values in [{int(tokens.min())}, {int(tokens.max())}], "
                f"expected [0, {self.codebook_size - 1}] for {self.bits} bits per group"
            )
        bits = (tokens.long()[..., None] // self.bit_values(tokens.device)) % 2
        codes = bits.to(dtype) * 2 - 1
        b, h, w = tokens.shape[:3]
        return codes.reshape(b, h, w, self.channels).permute(0, 3, 1, 2).contiguous()

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize a latent float (B, C, h, w); see `QuantizerOutput`."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected a latent of shape (B, {self.channels}, h, w), got {tuple(x.shape)}")
        signs = torch.where(x > 0, torch.ones_like(x), -torch.ones_like(x))
        tokens = self.codes_to_tokens(signs)
        quantized = x + (signs - x).detach() if x.requires_grad else signs
        out = QuantizerOutput(quantized=quantized, tokens=tokens)
        if self.training:
            # The losses are reduced over the contiguous (B, h*w, G, b) layout, as the original
            # does: float32 sums depend on the order of their terms.
            grouped = self.group(x).float()
            with torch.autocast(x.device.type, enabled=False):  # float32 even under mixed precision
                out.sample_entropy, out.codebook_entropy = self.entropies(grouped)
            out.entropy_loss = self.sample_weight * out.sample_entropy - self.codebook_weight * out.codebook_entropy
            out.commitment_loss = F.mse_loss(grouped, self.group(signs).float().detach())
        return out

    def group(self, x: torch.Tensor) -> torch.Tensor:
        """Split channels into groups: (B, C, h, w) -> contiguous (B, h*w, G, b)."""
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.groups, self.bits).contiguous()

    def codebook(self, device: torch.device | None = None) -> torch.Tensor:
        """Every code of one group: float32 (2**b, b) in {-1, +1}; row j is the code of token j."""
        tokens = torch.arange(self.codebook_size, device=device)
        return ((tokens[:, None] // self.bit_values(device)) % 2).float() * 2 - 1

    def entropies(self, grouped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean per-sample entropy and codebook entropy (nats) of the soft code assignment.

        `grouped`: float32 (B, N, G, b) from `group`. Logits are 2 * <x_group, code>, divided by
        the temperature; the softmax runs over the 2**b codes of each group.
        """
        logits = 2 * torch.einsum("bngd,kd->bngk", grouped, self.codebook(grouped.device))
        logits = logits / self.temperature
        probs = logits.softmax(dim=-1)
        # The original adds its eps inside log_softmax; it cancels mathematically but not in
        # float32 rounding, so it stays for bit-compatibility.
        log_probs = (logits + ENTROPY_EPS).log_softmax(dim=-1)
        sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
        if self.per_group_codebook_entropy:
            avg = probs.mean(dim=(0, 1))  # (G, 2**b)
            codebook_entropy = -(avg * torch.log(avg + ENTROPY_EPS)).sum(dim=-1).mean()
        else:
            avg = probs.reshape(-1, self.codebook_size).mean(dim=0)  # (2**b,)
            codebook_entropy = -(avg * torch.log(avg + ENTROPY_EPS)).sum()
        return sample_entropy, codebook_entropy
