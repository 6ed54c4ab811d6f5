"""`wetok.execution`: the settings of the fast path and their checks."""

from __future__ import annotations

import pytest
import torch

from wetok import Execution, Tokenizer, TokenizerConfig, WetokError
from wetok.execution import PRECISIONS, exact_float32, runs_natively


def test_defaults_are_the_exact_reference_computation():
    ex = Execution()
    assert ex.dtype == torch.float32 and ex.memory_format == torch.contiguous_format and ex.exact
    assert ex.describe() == "fp32, contiguous"


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_sixteen_bit_precisions_default_to_channels_last(precision, dtype):
    ex = Execution(precision)
    assert ex.dtype == dtype and ex.memory_format == torch.channels_last and not ex.exact
    assert Execution(precision, channels_last=False).memory_format == torch.contiguous_format
    assert Execution(precision, compile=True).describe() == f"{precision}, channels_last, compiled"


def test_float32_channels_last_or_compiled_is_not_the_reference():
    assert not Execution("fp32", channels_last=True).exact
    assert Execution("fp32", channels_last=True).memory_format == torch.channels_last
    assert not Execution("fp32", compile=True).exact


@pytest.mark.parametrize("kwargs, words", [
    ({"precision": "fp64"}, "precision must be one of fp32, bf16, fp16, got 'fp64'"),
    ({"precision": "bfloat16"}, "got 'bfloat16'"),
    ({"channels_last": "yes"}, "channels_last must be True, False or None"),
    ({"compile": 1.5}, "compile must be True or False"),
])
def test_wrong_settings_are_one_line_errors(kwargs, words):
    with pytest.raises(WetokError, match=words.replace("(", r"\(")) as info:
        Execution(**kwargs)
    assert "\n" not in str(info.value)


def test_precisions_listed_in_order():
    assert PRECISIONS == ("fp32", "bf16", "fp16")


def test_native_arithmetic_is_known_for_float32_and_answered_for_the_cpu():
    cpu = torch.device("cpu")
    assert runs_natively("fp32", cpu) is True
    assert runs_natively("bf16", cpu) in (True, False, None)
    assert runs_natively("bf16", torch.device("meta")) is None


SETTINGS = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv)


@pytest.fixture
def lowered_float32():
    """The process lowered float32 matmuls (bf16 on oneDNN, TF32 on CUDA) and kept cuDNN's TF32
    convolutions; put back afterwards (the settings exist without a GPU)."""
    before = [s.fp32_precision for s in SETTINGS]
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    yield ["tf32", "tf32", "bf16", before[3]]
    for s, value in zip(SETTINGS, before):
        s.fp32_precision = value


def test_exact_float32_computes_in_ieee_float32_and_restores_the_settings(lowered_float32):
    with exact_float32():
        assert [s.fp32_precision for s in SETTINGS] == ["ieee"] * 4
    assert [s.fp32_precision for s in SETTINGS] == lowered_float32
    with pytest.raises(ValueError), exact_float32():
        raise ValueError("restored on errors too")
    assert [s.fp32_precision for s in SETTINGS] == lowered_float32


def test_exact_float32_keeps_the_legacy_tf32_flags_readable():
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # legacy interface: conv and RNN both off
    try:
        with exact_float32():
            pass
        assert torch.backends.cudnn.allow_tf32 is False  # reading it does not fail
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_tokenizer_infers_in_ieee_float32_and_trains_with_the_process_settings(lowered_float32):
    config = TokenizerConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=16, groups=2)
    model = Tokenizer(config)
    seen = []
    model.encoder.register_forward_pre_hook(lambda *_: seen.append(torch.backends.mkldnn.matmul.fp32_precision))
    model.decoder.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.conv.fp32_precision))
    images = torch.zeros(1, 3, 32, 32)
    model.reconstruct(images)
    assert seen == ["ieee", "ieee"]
    seen.clear()
    model.decode_codes(torch.ones(1, model.config.latent_channels, 2, 2).requires_grad_())
    model.encode_latent(images)
    assert seen == ["tf32", "bf16"]
