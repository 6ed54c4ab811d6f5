"""The tokenizer on a CUDA device (skipped without one; `benchmarks/gpu_check.sh` runs these on a
GPU): float32 gives the original's tokens (TF32 is switched off inside the tokenizer's calls), and
the fast path runs in bf16 and fp16, also compiled."""

from __future__ import annotations

import pytest
import torch

import wetok
from support import CASES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("case", CASES)
def test_float32_on_cuda_gives_the_fixture_tokens_and_reconstruction(reference, expected, case):
    exp = expected(case)
    model = wetok.load(reference / f"{case}.ckpt", config=reference / f"{case}.yaml", device="cuda")
    tokens = model.encode(exp["image"].cuda())
    assert (tokens.flatten().cpu() == exp["ema_indices"]).float().mean().item() >= 0.999
    recon = model.decode(tokens, noise=exp.get("ema_noise")).cpu()
    assert (recon - exp["ema_recon"].clamp(-1, 1)).abs().max().item() < 1e-3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("compile", [False, True])
def test_the_fast_path_on_cuda_agrees_with_float32(precision, compile):
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    exact = wetok.load(None, device="cuda")
    fast = wetok.load(None, device="cuda", precision=precision, compile=compile)
    tokens, fast_tokens = exact.encode(image), fast.encode(image)
    assert fast.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (tokens == fast_tokens).float().mean().item() >= 0.9
    out = fast.decode(fast_tokens)
    assert out.dtype == torch.float32 and out.is_cuda
    assert (out - exact.decode(fast_tokens)).abs().mean().item() < 0.02
