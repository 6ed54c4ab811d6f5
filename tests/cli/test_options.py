"""The model options every subcommand shares (`wetok.cli.options`): the same flags, checks and
defaults for encode, decode, reconstruct, the single-entry form and evaluate."""

from __future__ import annotations

import pytest

import wetok
from support import make_model_dir
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
