"""What the tokenizer's run reports besides its losses: held-out PSNR / SSIM, and the grid of
originals over reconstructions (`wetok.runs.logs.RunLog` writes both)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WetokError
from ..images import to_uint8
from ..tokenizer import Tokenizer


def reconstruction_grid(images: torch.Tensor, reconstructions: torch.Tensor, limit: int = 8) -> np.ndarray:
    """The first `limit` originals (top row) over their reconstructions (bottom row): float
    (N, 3, S, S) in [-1, 1] each -> uint8 (2 S, min(N, limit) S, 3), for `RunLog.image`."""
    top = to_uint8(images[:limit])
    bottom = to_uint8(reconstructions[:limit])
    return np.concatenate([np.concatenate(list(top), axis=1), np.concatenate(list(bottom), axis=1)], axis=0)


@torch.no_grad()
def heldout_metrics(model: Tokenizer, images: torch.Tensor, batch_size: int = 8) -> tuple[dict[str, float], torch.Tensor]:
    """Mean PSNR (dB) and SSIM of `model`'s reconstructions of `images` (N, 3, S, S) in [-1, 1],
    both on 8-bit pixels (`wetok.metrics`, scikit-image's numbers), and the reconstructions of the
    first batch (for a grid). A generative decoder follows wetok's seeding rule with seed 0: image
    i gets noise from seed i (`wetok.tokenizer.seeded_noise`), so the figures are repeatable and
    do not depend on `batch_size`."""
    from ..metrics import psnr, ssim

    psnrs, ssims, first = [], [], None
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        recon = model.reconstruct(batch.to(model.device), seed=start).cpu()
        first = recon if first is None else first
        reference, test = to_uint8(batch), to_uint8(recon)
        psnrs += psnr(reference, test).clamp(max=100.0).tolist()
        ssims += ssim(reference, test).tolist()
    if first is None:
        raise WetokError("no held-out images to evaluate")
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}, first
