"""Token sequences for generator training, drawn from token shards held in memory.

The sequence stream of a run is the concatenation of epochs; epoch e is a permutation of the
shards' images drawn from (seed, e), and each image in it takes one of its augmented views,
also drawn from (seed, e) (`data.views: random`; `first`: always view 0). Micro-batch k of rank
r is the slice [(k * world + r) * B, (k * world + r + 1) * B) of that stream. So a batch depends on
(seed, world, k) alone: a resumed run draws exactly the batches the uninterrupted run would
have, every image appears once per epoch across the ranks, and no loader state needs saving.
The whole token array sits in memory (ImageNet with flips: 1.28M x 2 x 256 x 4 bytes, 2.6 GB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..shards import TokenShards


@dataclass
class TokenBatches:
    """Micro-batches of (tokens int64 (B, N, G), labels int64 (B,)) for one rank.

    `shards`: the opened shards; `batch_size` B per micro-batch; `views`: "random" or "first";
    `seed`, `rank`, `world`: as the module describes. `batch(k)` is micro-batch k.
    """

    shards: TokenShards
    batch_size: int
    views: str
    seed: int
    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        self._epoch_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_images(self) -> int:
        return self.shards.num_images

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Epoch `epoch`'s image order and each image's view (both (num_images,) int64)."""
        if epoch not in self._epoch_cache:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.num_images)
            views = self.shards.views
            chosen = rng.integers(0, views, size=self.num_images) if self.views == "random" else np.zeros(self.num_images, np.int64)
            if len(self._epoch_cache) > 1:  # batches move forward: keep this epoch and the one before
                del self._epoch_cache[min(self._epoch_cache)]
            self._epoch_cache[epoch] = (order, chosen)
        return self._epoch_cache[epoch]

    def rows(self, k: int) -> np.ndarray:
        """The shard rows of micro-batch `k` on this rank: int64 (B,)."""
        n = self.num_images
        start = (k * self.world + self.rank) * self.batch_size
        out = np.empty(self.batch_size, dtype=np.int64)
        for j, q in enumerate(range(start, start + self.batch_size)):
            order, chosen = self._epoch(q // n)
            image = order[q % n]
            out[j] = self.shards.rows_of_image[image, chosen[image]]
        return out

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `k`: tokens int64 (B, h * w, G) in raster order and labels int64 (B,)."""
        rows = self.rows(k)
        tokens = torch.from_numpy(self.shards.tokens[rows].astype(np.int64))
        b, h, w, g = tokens.shape
        return tokens.reshape(b, h * w, g), torch.from_numpy(self.shards.labels[rows].astype(np.int64))
