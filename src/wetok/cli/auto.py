"""The original tool's single-entry form: `wetok --input X --output Y` (or `wetok X Y`).

The mode comes from the input's extension (.json/.wtok decode; jpg, jpeg, png, bmp, webp,
tiff, avif encode) unless --mode names it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import WetokError
from ..images import IMAGE_SUFFIXES
from ..tokens import TOKEN_SUFFIXES
from . import decode, encode, options, reconstruct

MODES = {"encode": encode, "decode": decode, "reconstruct": reconstruct}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "input file (and output file, when --output is not given)")
    parser.add_argument("--mode", choices=("auto", *MODES), default="auto",
                        help="what to do (default auto: from the input's extension)")
    parser.add_argument("--format", choices=("wtok", "json"), default="wtok", help="token format for directory outputs")
    options.add_image_format(parser)
    options.add_model(parser)
    options.add_size(parser)
    options.add_run(parser, decodes=True)


def pick_mode(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in TOKEN_SUFFIXES:
        return "decode"
    if suffix in IMAGE_SUFFIXES:
        return "encode"
    raise WetokError(f"{path}: cannot tell the mode from the extension {suffix or '(none)'!r}; pass --mode encode|decode|reconstruct")


def run(args: argparse.Namespace) -> int:
    if not args.output and len(args.inputs) == 2 and not args.input_flags:
        args.inputs, args.output = [args.inputs[0]], args.inputs[1]
    inputs = options.inputs_of(args)
    mode = args.mode if args.mode != "auto" else pick_mode(inputs[0])
    return MODES[mode].run(args)
