"""Batches of token sequences: every image once per epoch over the ranks, views from the seed,
and a batch that depends on its index alone."""

from __future__ import annotations

import numpy as np
import torch

from wetok.ar.shards import open_shards
from wetok.ar.training.data import TokenBatches


def test_an_epoch_holds_every_image_once_across_the_ranks(ar_data):
    shards = open_shards(ar_data["shards"])
    assert shards.num_images == 8 and shards.views == 2
    ranks = [TokenBatches(shards, batch_size=2, views="random", seed=3, rank=r, world=2) for r in range(2)]
    rows = np.concatenate([ranks[r].rows(k) for k in range(2) for r in range(2)])  # 2 x 2 x 2 = 8 sequences: one epoch
    images = shards.image[rows]
    assert sorted(images.tolist()) == sorted(set(shards.image.tolist()))
    assert set(shards.view[rows].tolist()) <= {0, 1}


def test_views_are_drawn_per_epoch_and_first_means_view_0(ar_data):
    shards = open_shards(ar_data["shards"])
    random = TokenBatches(shards, batch_size=8, views="random", seed=0)
    first = TokenBatches(shards, batch_size=8, views="first", seed=0)
    drawn = np.concatenate([shards.view[random.rows(k)] for k in range(6)])
    assert 0 < drawn.mean() < 1  # both views appear over six epochs
    assert not shards.view[np.concatenate([first.rows(k) for k in range(6)])].any()


def test_a_batch_depends_on_its_index_alone(ar_data):
    shards = open_shards(ar_data["shards"])
    a = TokenBatches(shards, batch_size=3, views="random", seed=1)
    b = TokenBatches(shards, batch_size=3, views="random", seed=1)
    later = [a.batch(k) for k in range(5)]
    tokens, labels = b.batch(4)  # straight to batch 4 (a resumed run): the same as after batches 0..3
    assert torch.equal(tokens, later[4][0]) and torch.equal(labels, later[4][1])
    assert tokens.shape == (3, 16, 2) and tokens.dtype == torch.int64
    row = a.rows(4)
    assert torch.equal(tokens, torch.from_numpy(shards.tokens[row].astype(np.int64)).reshape(3, 16, 2))
    assert labels.tolist() == shards.labels[row].tolist()
    other = TokenBatches(shards, batch_size=3, views="random", seed=2)
    assert [other.rows(k).tolist() for k in range(3)] != [a.rows(k).tolist() for k in range(3)]
