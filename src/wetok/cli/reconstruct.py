"""`wetok reconstruct`: images -> tokens -> images in one go (no token file written)."""

from __future__ import annotations

import argparse

from ..codec import Codec
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "images")
    options.add_image_format(parser)
    options.add_model(parser)
    options.add_size(parser)
    options.add_run(parser, decodes=True)


def run(args: argparse.Namespace) -> int:
    return options.run_files(
        args, Codec.reconstruct_files, "reconstructed", sized=True, decodes=True, image_suffix=options.image_suffix(args)
    )
