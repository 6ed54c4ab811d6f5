"""Sampling: cached steps agree with the teacher-forced pass, an image's tokens depend only on its
seed (not on the batch), and the logit filters and the draw compute what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support import make_generator
from wetok import ar
from wetok.ar import sampling
from wetok.ar.sampling import SamplingSettings, draw, filter_logits, guide
from wetok.errors import WetokError


@pytest.fixture(scope="module")
def model() -> ar.Transformer:
    return make_generator()


def test_cached_sampling_logits_equal_the_teacher_forced_pass(model, monkeypatch):
    seen: list[torch.Tensor] = []
    real_draw = sampling.draw

    def recording(logits, uniforms):
        seen.append(logits.clone())
        return real_draw(logits, uniforms)

    monkeypatch.setattr(sampling, "draw", recording)
    labels = torch.tensor([0, 3, 4])
    tokens = ar.generate(model, labels, seeds=[5, 6, 7])  # no guidance, temperature 1, no filter: the raw logits
    cfg = model.config
    cached = torch.stack([s[:3] for s in seen]).view(cfg.positions, cfg.groups, 3, -1).permute(2, 0, 1, 3)  # CPU batches are padded
    with torch.no_grad():
        forced = model(tokens.view(3, cfg.positions, cfg.groups), labels)
    assert cached.shape == forced.shape == (3, 16, 2, 16)
    assert (cached - forced).abs().max().item() <= 1e-5
    assert forced.std() > 0.5


def test_guided_cached_logits_are_the_guidance_formula_of_two_teacher_forced_passes(model, monkeypatch):
    seen: list[torch.Tensor] = []
    real_draw = sampling.draw
    monkeypatch.setattr(sampling, "draw", lambda logits, u: (seen.append(logits.clone()), real_draw(logits, u))[1])
    labels = torch.tensor([1, 2])
    tokens = ar.generate(model, labels, cfg_scale=[2.0, 3.0], seeds=[0, 1])
    cfg = model.config
    cached = torch.stack([s[:2] for s in seen]).view(cfg.positions, cfg.groups, 2, -1).permute(2, 0, 1, 3)
    flat = tokens.view(2, cfg.positions, cfg.groups)
    with torch.no_grad():
        cond = model(flat, labels)
        uncond = model(flat, torch.full_like(labels, cfg.unconditional_label))
    scale = torch.tensor([2.0, 3.0]).view(1, 1, 2, 1)
    assert (cached - (uncond + (cond - uncond) * scale)).abs().max().item() <= 1e-4


SETTINGS = [
    {},
    {"cfg_scale": 1.75, "top_k": 5},
    {"cfg_scale": [1.5, 2.0], "temperature": [0.8, 1.3], "top_p": [0.9, 0.6]},
    {"top_k": [3, 0], "top_p": [1.0, 0.8], "temperature": 1.2},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "cfg-topk", "per-subtoken", "mixed"])
def test_an_images_tokens_do_not_depend_on_the_batch(model, settings):
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4])
    seeds = list(range(100, 111))
    whole = ar.generate(model, labels, seeds=seeds, **settings)
    for size in (1, 3, 4, 7):
        parts = [ar.generate(model, labels[i:i + size], seeds=seeds[i:i + size], **settings) for i in range(0, 11, size)]
        assert torch.equal(torch.cat(parts), whole), f"batch size {size}"
    assert len({tuple(t.flatten().tolist()) for t in whole}) == 11  # eleven different images


def test_seeds_reproduce_and_differ(model):
    labels = torch.tensor([2, 2, 2])
    a = ar.generate(model, labels, seeds=[1, 2, 3])
    assert torch.equal(a, ar.generate(model, labels, seeds=[1, 2, 3]))
    b = ar.generate(model, labels, seeds=[4, 5, 6])
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(ar.generate(model, labels, generator=g1), ar.generate(model, labels, generator=g2))


def test_generate_leaves_the_models_mode_and_refuses_bad_arguments(model):
    model.train()
    ar.generate(model, [0], seeds=[0])
    assert model.training
    model.eval()
    with pytest.raises(WetokError, match="labels must lie in"):
        ar.generate(model, [7])
    with pytest.raises(WetokError, match="one value or 2"):
        ar.generate(model, [0], cfg_scale=[1.0, 2.0, 3.0])
    with pytest.raises(WetokError, match="top_p must be in"):
        ar.generate(model, [0], top_p=0.0)
    with pytest.raises(WetokError, match="temperature must be > 0"):
        ar.generate(model, [0], temperature=0)
    with pytest.raises(WetokError, match="seeds or a generator"):
        ar.generate(model, [0], seeds=[0], generator=torch.Generator())
    with pytest.raises(WetokError, match="sampling seed"):
        ar.generate(model, [0], seeds=[-1])


# ---- the pieces, against independent computations ------------------------------------------------
def _filter_reference(row: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """The original's top-k / top-p rule, written out element by element."""
    out = row.astype(np.float64).copy()
    if top_k > 0:
        kth = np.sort(out)[::-1][top_k - 1]
        out[out < kth] = -np.inf
    if top_p < 1.0:
        order = np.argsort(-out, kind="stable")
        probs = np.exp(out[order] - out[order][0])
        probs /= probs.sum()
        total, keep = 0.0, []
        for i, p in zip(order, probs):
            keep.append(i)
            total += p
            if total > top_p:
                break
        mask = np.full(out.shape, True)
        mask[keep] = False
        out[mask] = -np.inf
    return out


@pytest.mark.parametrize("top_k, top_p", [(0, 1.0), (1, 1.0), (5, 1.0), (0, 0.5), (0, 0.95), (7, 0.6), (40, 1.0)])
def test_filter_logits_keeps_what_the_rule_keeps(top_k, top_p):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(top_k * 10 + int(top_p * 100))) * 3
    out = filter_logits(logits, top_k, top_p)
    for row, got in zip(logits.numpy(), out.numpy()):
        want = _filter_reference(row, top_k, top_p)
        assert np.array_equal(np.isfinite(got), np.isfinite(want))
        assert np.array_equal(got[np.isfinite(got)], row[np.isfinite(want)])


def test_filter_logits_keeps_ties_with_the_kth_value():
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert torch.isfinite(filter_logits(logits, 2, 1.0)).tolist() == [[False, True, True, False, True]]


def test_draw_follows_the_distribution_and_never_draws_probability_zero():
    logits = torch.tensor([[0.0, 1.0, float("-inf"), 2.0, -1.0]])
    probs = torch.softmax(logits, -1)[0].double()
    u = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000  # evenly spread: frequencies are the probabilities
    drawn = draw(logits.expand(20000, -1), u)
    freq = torch.bincount(drawn, minlength=5).double() / 20000
    assert (freq - probs).abs().max() < 1e-3
    assert freq[2] == 0
    edges = draw(logits.expand(2, -1), torch.tensor([1.0, 1e-12], dtype=torch.float64))
    assert edges.tolist() == [4, 0]


def test_guidance_is_uncond_plus_scaled_difference():
    cond, uncond = torch.randn(3, 8), torch.randn(3, 8)
    both = torch.cat([cond, uncond])
    assert torch.allclose(guide(both, 1.75, True), uncond + 1.75 * (cond - uncond))
    assert torch.equal(guide(both, 1.0, True), cond)
    assert torch.equal(guide(cond, 3.0, False), cond)


def test_settings_take_one_value_or_one_per_subtoken():
    s = SamplingSettings.of(4, cfg_scale=[1.75, 1.8, 2.0, 2.0], top_k=0, top_p=1.0, temperature=1.0)
    assert s.cfg_scale == (1.75, 1.8, 2.0, 2.0) and s.top_k == (0, 0, 0, 0) and s.guided
    assert not SamplingSettings.of(4).guided
    with pytest.raises(WetokError, match="top_k must be a whole number"):
        SamplingSettings.of(4, top_k=1.5)


def test_a_bfloat16_generator_keeps_float32_rotary_angles_and_samples_like_float32():
    exact = make_generator()
    fast = make_generator().to(torch.bfloat16)
    assert fast.rotary.dtype == torch.float32 and torch.equal(fast.rotary, exact.rotary)
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    labels = torch.arange(4) % exact.config.num_classes
    a, b = (ar.generate(m, labels, seeds=range(4)) for m in (exact, fast))
    assert a.shape == b.shape and int(b.min()) >= 0 and int(b.max()) < 2 ** exact.config.bits_per_group
    assert (a == b).float().mean().item() >= 0.5  # the same uniforms: most draws land on the same token
