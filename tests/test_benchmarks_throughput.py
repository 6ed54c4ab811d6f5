"""benchmarks/throughput.py: FLOPs counted right, variants set up as named, timings and the
original's modules plumbed through, the quality check on photos, and bad input refused in one line."""

from __future__ import annotations

import runpy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from support import REPO, require_reference

THROUGHPUT = runpy.run_path(str(REPO / "benchmarks" / "throughput.py"), run_name="throughput")
MODELS = runpy.run_path(str(REPO / "benchmarks" / "models.py"), run_name="models")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    """The tiny_d16 fixture (32 GroupNorm groups, as the original's modules)."""
    require_reference()
    return MODELS["load_model"]("tiny_d16")[0]


def conv_and_linear_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """2 x multiply-adds of every Conv2d and Linear in one forward pass, from their output shapes."""
    total = 0

    def count(layer: nn.Module, _args, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += 2 * out.numel() * (layer.in_channels // layer.groups) * kh * kw
        elif isinstance(layer, nn.Linear):
            total += 2 * out.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(*inputs)
    for hook in hooks:
        hook.remove()
    return total


def test_flops_per_image_are_the_convolutions_and_linear_layers(tiny):
    encode, decode = THROUGHPUT["flops_per_image"](tiny.config, 64)
    image = torch.zeros(1, 3, 64, 64)
    assert encode == conv_and_linear_flops(tiny.encoder, image)
    codes = torch.ones(1, tiny.config.latent_channels, 4, 4)
    assert decode == conv_and_linear_flops(tiny.decoder, codes)
    assert encode > 1e7 and decode > 1e7


def test_variants_are_set_up_as_named(tiny):
    variant = THROUGHPUT["variant"]
    cl = variant(tiny, "fp32-cl", CPU)
    assert cl.execution.precision == "fp32" and cl.execution.memory_format == torch.channels_last
    compiled = variant(tiny, "bf16+compile", CPU)
    assert compiled.dtype == torch.bfloat16 and compiled.execution.compile
    assert tiny.dtype == torch.float32 and tiny.execution.exact  # each variant works on a copy
    for bad in ("fp8", "fp32+fast", "bf16+compile+compile"):
        with pytest.raises(SystemExit, match="unknown variant"):
            variant(tiny, bad, CPU)


def test_timed_rows_print_rates_fractions_and_the_speed_up(tiny, capsys):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    Row = THROUGHPUT["Row"]
    rows = []
    for name in ("fp32", "fp32-cl"):
        t_enc, t_dec, peak = THROUGHPUT["time_model"](THROUGHPUT["variant"](tiny, name, CPU), images, CPU, 1, 2)
        assert t_enc > 0 and t_dec > 0 and peak > 0
        rows.append(Row("tiny_d16", 32, 2, name, t_enc, t_dec, peak))
    rows[1].encode_s, rows[1].decode_s = rows[0].encode_s / 2, rows[0].decode_s / 2  # twice as fast, by construction
    THROUGHPUT["print_rows"](rows, 1e9, 1e9, {"fp32": 1e12, "bf16": 2e12})
    out = capsys.readouterr().out.splitlines()
    assert "x 1.00 vs fp32" in out[0] and "x 2.00 vs fp32" in out[1]
    rate = 2e9 * 2 / (rows[0].encode_s + rows[0].decode_s)
    assert f"{rate / 1e9:8.1f} GFLOP/s = {rate / 1e12:6.1%} of fp32 peak" in out[0]


def test_the_dense_peak_is_the_fastest_of_three_plausible_kernels():
    rates = THROUGHPUT["kernel_rates"](torch.float32, CPU, seconds=0.001, largest=256)
    assert set(rates) == {"gemm", "gemm as 1x1 conv", "conv 3x3", "peak"}
    assert all(1e8 < r < 1e14 for r in rates.values())
    assert rates["peak"] == max(rates["gemm"], rates["gemm as 1x1 conv"], rates["conv 3x3"])


def write_original(root, encoder_offset: float = 0.0):
    """A stand-in for the original's improved_model.py, with its constructors' arguments and its
    modules' weight names: wetok's own modules, the encoder's output shifted by `encoder_offset`."""
    path = root / "src" / "WeTok" / "modules" / "diffusionmodules" / "improved_model.py"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(f"""
        from wetok import TokenizerConfig
        from wetok.nn import Decoder as _Decoder, Encoder as _Encoder

        def _config(ch, out_ch, in_channels, num_res_blocks, z_channels, ch_mult, resolution, generative=False):
            return TokenizerConfig(channels=ch, channel_mult=ch_mult, num_res_blocks=num_res_blocks,
                                   latent_channels=z_channels, groups=4, generative=generative,
                                   in_channels=in_channels, out_channels=out_ch)

        class Encoder(_Encoder):
            def __init__(self, **kw):
                super().__init__(_config(**kw))

            def forward(self, x):
                return super().forward(x) + {encoder_offset}

        class Decoder(_Decoder):
            def __init__(self, **kw):
                super().__init__(_config(**kw))

        class GANDecoder(_Decoder):
            def __init__(self, **kw):
                super().__init__(_config(generative=True, **kw))
        """))
    return root


def original_args(root, **kw):
    import argparse

    return argparse.Namespace(original=root, warmup=1, repeats=1, **kw)


def test_the_originals_modules_are_checked_then_timed(tiny, tmp_path):
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    row = THROUGHPUT["original_row"](original_args(write_original(tmp_path)), tiny, "tiny_d16", 32, 1, images, CPU)
    assert row.variant == "original fp32" and row.encode_s > 0 and row.decode_s > 0


def test_the_originals_modules_must_compute_what_wetok_computes(tiny, tmp_path):
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    root = write_original(tmp_path, encoder_offset=0.01)
    with pytest.raises(SystemExit, match="the original's encoder differs from wetok's by 1.00e-02"):
        THROUGHPUT["original_row"](original_args(root), tiny, "tiny_d16", 32, 1, images, CPU)


def test_a_missing_original_is_one_line(tiny, tmp_path):
    with pytest.raises(SystemExit, match="not found \\(give the root of a WeTok checkout\\)"):
        THROUGHPUT["original_modules"](tmp_path, tiny)


def test_quality_on_photos_reports_exact_channels_last(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(2):
        smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(tmp_path / f"photo{i}.png")
    import argparse

    args = argparse.Namespace(photos=tmp_path, quality_size=64, variants=["fp32", "fp32-cl", "fp16"])
    THROUGHPUT["quality"](args, CPU)
    out = capsys.readouterr().out
    assert "2 photos at 64 px from" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("fp32-cl"))
    assert "(+0.000 dB)  token bits equal 100.0000%  group tokens equal 100.000%" in line
    fp16 = next(line for line in out.splitlines() if line.strip().startswith("fp16"))
    assert float(fp16.split("token bits equal ")[1].split("%")[0]) > 99.0


def test_the_command_runs_end_to_end():
    require_reference()
    cmd = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--models", "tiny_d16", "--sizes", "32",
           "--batches", "1", "--variants", "fp32,fp32-cl", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "dense peak fp32: " in done.stdout and "dense peak bf16: " in done.stdout
    assert "fp32-cl" in done.stdout and "vs fp32" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--models", "no-such-model"], "unknown model 'no-such-model'"),
    (["--variants", "fp8"], "unknown variant 'fp8'"),
    (["--sizes", "256,abc"], "argument --sizes: invalid int value: 'abc'"),
    (["--batches", "1,0"], "argument --batches: must be at least 1, got 0"),
    (["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
    (["--warmup", "1,2"], "argument --warmup: invalid int value: '1,2'"),
    (["--original", "no-such-dir"], "improved_model.py not found (give the root of a WeTok checkout)"),
    (["--photos", "no-such-dir", "--quality-only"], "--photos: no-such-dir is not a folder"),
])
def test_bad_input_is_one_line_and_a_failure(argv, message):
    require_reference()
    cmd = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--sizes", "32", "--batches", "1",
           "--repeats", "1", "--warmup", "0", "--models", "tiny_d16", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


def test_the_gpu_check_passes_arguments_the_benchmark_takes():
    """benchmarks/gpu_check.sh runs only on a GPU; its command lines are checked here."""
    import shlex

    script = (REPO / "benchmarks" / "gpu_check.sh").read_text().replace("\\\n", " ")
    lines = [line.split("throughput.py", 1)[1] for line in script.splitlines() if "benchmarks/throughput.py" in line
             and not line.lstrip().startswith("#")]
    assert len(lines) == 3
    for line in lines:
        args = THROUGHPUT["arguments"]().parse_args(shlex.split(line))
        assert args.device == "cuda"
        if not args.quality_only:
            assert args.models == ["imagenet-d16"] and "bf16" in args.variants
