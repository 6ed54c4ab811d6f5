"""How a tokenizer runs: its working precision, memory layout and compilation.

float32 ("fp32", the default) computes what the released models compute, layer for layer, on
contiguous NCHW tensors (in IEEE float32 inside the tokenizer's inference calls: on CUDA without
TF32, which rounds convolution inputs to 10 mantissa bits; see `exact_float32`). The fast path
holds the weights in bfloat16 ("bf16") or float16 ("fp16"), converted once when it is chosen
rather than on every call as autocast would, and keeps every activation channels_last (NHWC), the
layout the CPU's oneDNN and CUDA's cuDNN convolutions run fastest in; `compile` adds
`torch.compile`, which fuses each GroupNorm with the SiLU after it and the elementwise work around
them.

What the fast path gives up is measured by `benchmarks/throughput.py` and listed in the README: a
few tokens differ from float32's where a latent sits within rounding of zero, and reconstructions
lose a little PSNR. Float32 stays the default on every device because token files are data: a
dataset tokenized on one machine must give the same tokens on another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .errors import WetokError

PRECISIONS = ("fp32", "bf16", "fp16")
"""The working precisions, as `wetok.load(precision=...)` and `--precision` take them."""

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Execution:
    """How a tokenizer runs (see the module's docstring).

    Attributes:
        precision: "fp32" (exact, the default), "bf16" or "fp16": the dtype of weights and
            activations.
        channels_last: activations (and 4-D weights) in NHWC memory layout; None picks it with the
            precision: on for bf16 and fp16, off for fp32 (whose NCHW convolutions are the
            reference's).
        compile: run the encoder and decoder through `torch.compile` (the first call of each
            image size compiles: tens of seconds).
    """

    precision: str = "fp32"
    channels_last: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise WetokError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.channels_last not in (None, True, False):
            raise WetokError(f"channels_last must be True, False or None, got {self.channels_last!r}")
        if self.compile not in (True, False):
            raise WetokError(f"compile must be True or False, got {self.compile!r}")

    @property
    def dtype(self) -> torch.dtype:
        """The working dtype: float32, bfloat16 or float16."""
        return DTYPES[self.precision]

    @property
    def memory_format(self) -> torch.memory_format:
        """torch.channels_last or torch.contiguous_format."""
        nhwc = self.precision != "fp32" if self.channels_last is None else self.channels_last
        return torch.channels_last if nhwc else torch.contiguous_format

    @property
    def exact(self) -> bool:
        """The reference computation: float32 on contiguous tensors, not compiled."""
        return self.precision == "fp32" and self.memory_format == torch.contiguous_format and not self.compile

    def describe(self) -> str:
        """e.g. "bf16, channels_last, compiled"."""
        layout = "channels_last" if self.memory_format == torch.channels_last else "contiguous"
        return f"{self.precision}, {layout}" + (", compiled" if self.compile else "")


def _float32_settings() -> tuple:
    """The per-operator float32 precision settings that a user's code may have lowered."""
    backends = torch.backends
    return (backends.cuda.matmul, backends.cudnn.conv, backends.mkldnn.matmul, backends.mkldnn.conv)


@contextmanager
def exact_float32() -> Iterator[None]:
    """While active, float32 convolutions and matrix products are computed in IEEE float32 on
    every backend, whatever the process set before: no TF32 on CUDA (cuBLAS, and cuDNN, whose
    convolutions default to TF32), no bfloat16 on CPUs where oneDNN could use it (as
    `torch.set_float32_matmul_precision("medium")` allows), so float32 on one machine computes
    what it does on another. Restored on exit. Operations in other dtypes are unaffected.

    It sets PyTorch's per-operator `fp32_precision`; the legacy `allow_tf32` flags are neither
    read nor written, since reading them fails once the two interfaces have been mixed."""
    settings = _float32_settings()
    previous = [setting.fp32_precision for setting in settings]
    for setting in settings:
        setting.fp32_precision = "ieee"
    try:
        yield
    finally:
        for setting, value in zip(settings, previous):
            setting.fp32_precision = value


def runs_natively(precision: str, device: torch.device) -> bool | None:
    """Whether `device` has arithmetic for `precision` (None: cannot tell). float32 always does;
    on a CPU, bf16 and fp16 need the instructions oneDNN uses for them (AVX512 with BF16 or
    FP16, or AMX): without them each 16-bit convolution is emulated and runs several times
    slower than float32, and the CLI warns."""
    if precision == "fp32":
        return True
    try:
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported()) if precision == "bf16" else True
        if device.type == "cpu":
            mkldnn = torch.ops.mkldnn
            return bool(mkldnn._is_mkldnn_bf16_supported() if precision == "bf16" else mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return None
    return None
