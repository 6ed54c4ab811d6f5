"""`wetok reconstruct`: images -> tokens -> images in one go (no token file written)."""

from __future__ import annotations

import argparse

from ..pipeline import reconstruct_files
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "images")
    parser.add_argument("--image-format", default="png", metavar="EXT", help="image format for directory outputs (default png)")
    options.add_model(parser)
    options.add_size(parser)
    options.add_run(parser, decodes=True)


def run(args: argparse.Namespace) -> int:
    summary = reconstruct_files(
        options.inputs_of(args), args.output, options.model_choice(args), options.size_policy(args),
        options.run_options(args), image_suffix="." + args.image_format.lstrip("."),
    )
    return options.report(summary, "reconstructed")
