"""`wetok.execution`: the settings of the fast path and their checks."""

from __future__ import annotations

import pytest
import torch

from wetok import Execution, WetokError
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


def test_exact_float32_leaves_cpu_settings_alone():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with exact_float32(torch.device("cpu"), torch.float32):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_exact_float32_switches_tf32_off_on_cuda_and_restores_it():
    torch.backends.cudnn.allow_tf32 = True  # the settings themselves exist without a GPU
    with exact_float32(torch.device("cuda"), torch.float32):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32
    with exact_float32(torch.device("cuda"), torch.bfloat16):
        assert torch.backends.cudnn.allow_tf32
