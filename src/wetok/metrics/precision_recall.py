"""Improved precision and recall (Kynkäänniemi et al., 2019) as OpenAI's ADM evaluator computes
them (guided-diffusion `evaluations/evaluator.py`, its `ManifoldEstimator` with k = 3).

Each set of features estimates a manifold: the union of balls around its points, the radius of a
point being the squared Euclidean distance to its k-th nearest neighbour within the same set,
counting the point itself (the k-th entry after the zeroth, itself, of the sorted distances).

    precision = fraction of samples within (<=) the radius of at least one reference point
    recall    = fraction of reference points within (<=) the radius of at least one sample

Squared distances are |u|^2 - 2 u.v + |v|^2, clamped at 0, as the ADM evaluator; here in float32
(or the dtype asked for), where ADM uses float16 whenever that stays finite. Everything runs in
blocks of rows and columns (10,000 each by default, as ADM), so no N x M matrix is ever held:
memory is one block of distances (400 MB in float32) and the running k + 1 smallest per row.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WetokError
from ..execution import exact_float32

NEIGHBOURHOOD = 3
"""k of the k-th nearest neighbour, as the ADM evaluator (`nhood_sizes=(3,)`)."""
BLOCK = 10_000
"""Rows and columns per block of distances, as the ADM evaluator."""


def _as_tensor(features: np.ndarray | torch.Tensor, device: torch.device | str | None, dtype: torch.dtype,
               what: str) -> torch.Tensor:
    x = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    if x.ndim != 2 or x.shape[0] == 0:
        raise WetokError(f"{what}: expected features (N, D) with N >= 1, got shape {tuple(x.shape)}")
    return x.to(device=device if device is not None else x.device, dtype=dtype)


def squared_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(R, D) and (C, D) -> (R, C) squared Euclidean distances |u|^2 - 2 u.v + |v|^2, clamped at 0."""
    norm_u = (u * u).sum(1, keepdim=True)
    norm_v = (v * v).sum(1)[None, :]
    return (norm_u - 2 * (u @ v.T) + norm_v).clamp_min(0)


def manifold_radii(
    features: np.ndarray | torch.Tensor, *, k: int = NEIGHBOURHOOD, block: int = BLOCK,
    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(N, D) features -> (N,) radii: each point's squared distance to its k-th nearest neighbour
    in the set, the point itself counting as the zeroth (entry k of its sorted distances).

    Needs N > k. Distances come in `block` x `block` pieces; each row keeps its k + 1 smallest."""
    x = _as_tensor(features, device, dtype, "manifold radii")
    n = x.shape[0]
    if n <= k:
        raise WetokError(f"manifold radii with k = {k} need more than {k} feature vectors, got {n}")
    radii = torch.empty(n, dtype=dtype, device=x.device)
    with exact_float32():
        for r0 in range(0, n, block):
            rows = x[r0:r0 + block]
            best = torch.empty(rows.shape[0], 0, dtype=dtype, device=x.device)
            for c0 in range(0, n, block):
                d = squared_distances(rows, x[c0:c0 + block])
                merged = torch.cat([best, d], dim=1)
                best = merged.topk(min(k + 1, merged.shape[1]), dim=1, largest=False, sorted=False).values
            radii[r0:r0 + block] = best.sort(dim=1).values[:, k]
    return radii


def precision_recall(
    reference: np.ndarray | torch.Tensor, samples: np.ndarray | torch.Tensor, *,
    reference_radii: torch.Tensor | None = None, sample_radii: torch.Tensor | None = None,
    k: int = NEIGHBOURHOOD, block: int = BLOCK, device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, float]:
    """(precision, recall) of `samples` (M, D) against `reference` (N, D), with the manifolds of
    k-th neighbour radii (`manifold_radii`, computed unless given).

    precision: the fraction of samples j with dist(sample j, reference i) <= radius_ref[i] for some i;
    recall: the fraction of reference points i with dist(reference i, sample j) <= radius_sample[j] for some j.
    """
    ref = _as_tensor(reference, device, dtype, "precision/recall reference")
    smp = _as_tensor(samples, ref.device, dtype, "precision/recall samples")
    if ref.shape[1] != smp.shape[1]:
        raise WetokError(f"precision/recall: feature dimensions differ: {ref.shape[1]} vs {smp.shape[1]}")
    r_ref = manifold_radii(ref, k=k, block=block, dtype=dtype) if reference_radii is None else reference_radii
    r_smp = manifold_radii(smp, k=k, block=block, dtype=dtype) if sample_radii is None else sample_radii
    r_ref = r_ref.to(device=ref.device, dtype=dtype).flatten()
    r_smp = r_smp.to(device=ref.device, dtype=dtype).flatten()
    if r_ref.shape[0] != ref.shape[0] or r_smp.shape[0] != smp.shape[0]:
        raise WetokError("precision/recall: one radius per feature vector is needed")
    sample_in = torch.zeros(smp.shape[0], dtype=torch.bool, device=ref.device)
    ref_in = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
    with exact_float32():
        for r0 in range(0, ref.shape[0], block):
            rows = ref[r0:r0 + block]
            for c0 in range(0, smp.shape[0], block):
                d = squared_distances(rows, smp[c0:c0 + block])  # (reference block, sample block)
                sample_in[c0:c0 + block] |= (d <= r_ref[r0:r0 + block, None]).any(dim=0)
                ref_in[r0:r0 + block] |= (d <= r_smp[None, c0:c0 + block]).any(dim=1)
    return float(sample_in.double().mean()), float(ref_in.double().mean())
