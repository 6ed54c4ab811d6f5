"""Pieces of generator training: AdamW's weight-decay groups and label dropout's rate."""

from __future__ import annotations

import torch

from support import make_generator
from wetok.ar.training.loop import parameter_groups


def test_weight_decay_applies_to_matrices_only():
    model = make_generator()
    decayed, plain = parameter_groups(model, 0.05)
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = sorted(names[id(p)] for p in decayed["params"])
    plain_names = sorted(names[id(p)] for p in plain["params"])
    assert "0_emb.weight" in decayed_names and "class_emb.embedding_table.weight" in decayed_names
    assert "head.0.weight" in decayed_names and "spatial_blocks.0.attention.wqkv.weight" in decayed_names
    assert plain_names and all(n.endswith("_norm.weight") or n == "norm.weight" for n in plain_names)
    own = [n for n, _ in model.named_parameters() if not n.startswith("tokenizer.")]  # the paired tokenizer is frozen
    assert sorted(decayed_names + plain_names) == sorted(own)
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])


def test_label_dropout_replaces_a_tenth_of_the_labels_by_the_unconditional_class():
    model = make_generator(classes=5).train()
    emb = model.class_emb
    assert emb.class_dropout == 0.1
    labels = torch.randint(0, 5, (200_000,), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    with torch.no_grad():
        out = emb(labels)[:, 0]
    unconditional = emb.embedding_table.weight[5]
    dropped = (out == unconditional).all(dim=1).float().mean().item()
    assert abs(dropped - 0.1) < 0.004  # 4.7 standard deviations of a binomial(200000, 0.1) rate
    kept = ~(out == unconditional).all(dim=1)
    assert torch.equal(out[kept], emb.embedding_table.weight[labels[kept]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(emb(labels)[:, 0], emb.embedding_table.weight[labels])  # no dropout in eval mode
