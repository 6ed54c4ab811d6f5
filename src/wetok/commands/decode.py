"""`wetok decode`: token files (`.wtok`, JSON) -> images, with the model each file names unless
--ckpt/--config/--preset override it."""

from __future__ import annotations

import argparse

from ..pipeline import decode_files
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "token files (.wtok, .json)")
    parser.add_argument("--image-format", default="png", metavar="EXT", help="image format for directory outputs (default png)")
    options.add_model(parser)
    options.add_run(parser, decodes=True)


def run(args: argparse.Namespace) -> int:
    summary = decode_files(
        options.inputs_of(args), args.output, options.model_choice(args), options.run_options(args),
        image_suffix="." + args.image_format.lstrip("."),
    )
    return options.report(summary, "decoded")
