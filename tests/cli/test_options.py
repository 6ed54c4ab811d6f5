"""The model options every subcommand shares (`wetok.cli.options`): the same flags, checks and
defaults for encode, decode, reconstruct, the single-entry form and evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import cli, make_model_dir, write_photo
from wetok.cli import options
from wetok.cli.main import build_parser
from wetok.cli.options import load_model
from wetok.errors import WetokError

SUBCOMMANDS = (
    ["encode", "in.png", "-o", "out"],
    ["decode", "in.wtok", "-o", "out"],
    ["reconstruct", "in.png", "-o", "out"],
    ["evaluate", "--data", "images"],
)


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda a: a[0])
def test_every_subcommand_has_the_same_model_options_and_defaults(argv):
    args = build_parser().parse_args(argv)
    assert (args.ckpt, args.config, args.preset, args.weights, args.device, args.trust_pickle) == (
        None, None, None, "ema", "auto", False,
    )
    given = build_parser().parse_args([*argv, "--ckpt", "m", "--preset", "imagenet-d8", "--weights", "raw", "--device", "cpu",
                                       "--trust-pickle"])
    assert (given.ckpt, given.preset, given.weights, given.device, given.trust_pickle) == ("m", "imagenet-d8", "raw", "cpu", True)


def _args(*extra: str):
    return build_parser().parse_args(["encode", "in.png", "-o", "out", *extra])


def test_no_model_and_no_default_model_says_so(no_default_model):
    assert not wetok.default_model_available()
    with pytest.raises(WetokError, match="no default model yet: pass --preset NAME"):
        load_model(_args())


def test_model_choice_conflicts():
    with pytest.raises(WetokError, match="either --config or --preset"):
        load_model(_args("--ckpt", "x", "--config", "y.yaml", "--preset", "imagenet-d8"))
    with pytest.raises(WetokError, match="give the checkpoint with --ckpt"):
        load_model(_args("--config", "y.yaml"))
    with pytest.raises(WetokError, match="unknown preset 'nope'"):
        load_model(_args("--preset", "nope"))
    with pytest.raises(WetokError, match="unknown device 'gpu7'"):
        load_model(_args("--device", "gpu7"))


def test_device_auto_is_the_cpu_without_cuda_and_the_model_says_where_it_came_from(tmp_path):
    directory = make_model_dir(tmp_path / "tiny")
    model = load_model(_args("--ckpt", str(directory)))
    assert model.device.type == ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    assert model.identity.weights_file == "tiny" and model.identity.weights == "saved"
    assert model.identity.ckpt == str(directory)


# ---- option values (issue 17, #13) ----------------------------------------------------------------
@pytest.mark.parametrize("argv", SUBCOMMANDS[:3], ids=lambda a: a[0])
def test_defaults_pass_the_value_checks(argv):
    args = build_parser().parse_args(argv)
    assert args.batch_size == 8 and args.tile == 512 and args.tile_overlap == 128
    if argv[0] != "encode":
        assert args.seed == 0 and args.image_format == "png"


@pytest.mark.parametrize("text, want", [("png", "png"), (".PNG", "png"), ("jpg", "jpg"), ("WebP", "webp"), ("tiff", "tiff"), ("bmp", "bmp")])
def test_image_formats_are_plain_suffixes_pillow_writes(text, want):
    from wetok.cli.options import image_format_option

    assert image_format_option(text) == want


@pytest.mark.parametrize("text", ["../x", "png/../../x", "/abs", "p ng", "", ".", "png\n", "x" * 17, "txt", "wtok", "pngx", "ünï"])
def test_other_image_formats_are_usage_errors(text, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["decode", "in.wtok", "-o", "out", "--image-format", text])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wetok: error: argument --image-format: ") and err.count("\n") == 1


@pytest.mark.parametrize("value, ok", [("0", True), (str(2**62), True), (str(2**62 + 1), False), (str(2**63), False),
                                       (str(10**23), False), ("-1", False), ("1.5", False)])
def test_seeds_fit_a_generator_seed_with_room_for_every_image(value, ok, capsys):
    from wetok.tokenizer import MAX_SEED

    argv = ["reconstruct", "in.png", "-o", "out", "--seed", value]
    if ok:
        seed = build_parser().parse_args(argv).seed
        assert seed + 2**62 - 1 <= MAX_SEED  # image i of a run uses seed + i: room for 2**62 images
    else:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        assert "argument --seed" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, ok", [("--batch-size", "1", True), ("--batch-size", "0", False), ("--batch-size", "-2", False),
                                             ("--tile", "0", True), ("--tile", "2", True), ("--tile", "1", False),
                                             ("--tile-overlap", "0", True), ("--tile-overlap", "-1", False),
                                             ("--size", "0", True), ("--size", "65535", True), ("--size", "65536", False),
                                             ("--max-pixels", "0", True), ("--max-pixels", "-1", False)])
def test_counts_and_sizes_are_checked_at_parse_time(flag, value, ok, capsys):
    argv = ["encode", "in.png", "-o", "out", flag, value]
    if ok:
        build_parser().parse_args(argv)
    else:
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        err = capsys.readouterr().err
        assert err.startswith(f"wetok: error: argument {flag}: ") and err.count("\n") == 1


@pytest.mark.parametrize("device, problem", [("bogus", "unknown device 'bogus'"), ("meta", "unsupported device 'meta'"),
                                             ("mps", "unsupported device 'mps'"), ("cuda:-1", "unknown device")])
def test_devices_the_command_line_cannot_run_on_are_wetok_errors(device, problem):
    with pytest.raises(WetokError, match=problem):
        load_model(_args("--device", device))


def test_tiles_under_two_token_cells_are_refused():
    from wetok.cli.options import check_tile
    from wetok.tiling import TileSpec

    check_tile(TileSpec(12, 0), 4)  # 3 cells, overlap at least 1 cell: the smallest tiling
    with pytest.raises(WetokError, match="tile overlap 0px must be less than half the tile"):
        check_tile(TileSpec(8, 0), 4)  # 2 cells leave no room for the 1-cell overlap
    with pytest.raises(WetokError, match="--tile 7 is smaller than 2 token cells of this model"):
        check_tile(TileSpec(7, 0), 4)
    with pytest.raises(WetokError, match="tile overlap"):
        check_tile(TileSpec(64, 32), 8)


# ---- how the model runs: --precision, --channels-last, --compile -----------------------------------
@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=lambda a: a[0])
def test_every_subcommand_takes_the_execution_options(argv):
    args = build_parser().parse_args(argv)
    assert (args.precision, args.channels_last, args.compile) == ("fp32", False, False)
    given = build_parser().parse_args([*argv, "--precision", "bf16", "--channels-last", "--compile"])
    assert (given.precision, given.channels_last, given.compile) == ("bf16", True, True)


def test_a_precision_the_tokenizer_has_not_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["encode", "in.png", "-o", "out", "--precision", "int8"])
    assert info.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err


def test_the_model_is_loaded_in_the_precision_asked_for(tmp_path):
    model = load_model(_args("--ckpt", str(make_model_dir(tmp_path / "m")), "--precision", "fp16"))
    assert model.dtype == torch.float16 and model.execution.memory_format == torch.channels_last
    model = load_model(_args("--ckpt", str(tmp_path / "m"), "--channels-last"))
    assert model.dtype == torch.float32 and model.execution.memory_format == torch.channels_last


@pytest.mark.parametrize("native, warned", [(False, True), (True, False), (None, False)])
def test_emulated_sixteen_bit_arithmetic_is_one_warning_line(tmp_path, capsys, monkeypatch, native, warned):
    monkeypatch.setattr(options, "runs_natively", lambda precision, device: native)
    load_model(_args("--ckpt", str(make_model_dir(tmp_path / "m")), "--precision", "bf16", "--device", "cpu"))
    err = capsys.readouterr().err
    assert (err == "wetok: warning: this CPU has no bf16 arithmetic (on a CPU: AVX512-BF16/FP16 or AMX); bf16 is emulated "
            "and slower than fp32 here\n") if warned else err == ""


def test_reconstruct_in_bfloat16_writes_an_image_close_to_float32s(tmp_path, capsys):
    """The default model (trained: few latents near zero, so few tokens flip in bf16)."""
    image = write_photo(tmp_path / "in.png", 48, 64)
    outs = {}
    for precision in ("fp32", "bf16"):
        outs[precision] = tmp_path / f"{precision}.png"
        code, out, _ = cli(capsys, "reconstruct", image, "-o", outs[precision], "--size", "0", "--precision", precision)
        assert (code, out) == (0, "wetok: reconstructed 1 image\n")
    a, b = (np.asarray(Image.open(outs[p]), dtype=np.float64) for p in ("fp32", "bf16"))
    assert a.shape == b.shape == (48, 64, 3)
    assert 0 < np.abs(a - b).mean() < 2.0  # of 255 levels, on a picture whose own spread is about 40
