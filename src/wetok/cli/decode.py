"""`wetok decode`: token files (`.wtok`, JSON) -> images, with the model each file names unless
--ckpt/--config/--preset override it."""

from __future__ import annotations

import argparse

from ..codec import Codec
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "token files (.wtok, .json)")
    options.add_image_format(parser)
    options.add_model(parser)
    options.add_run(parser, decodes=True)


def run(args: argparse.Namespace) -> int:
    return options.run_files(args, Codec.decode_files, "decoded", sized=False, decodes=True, image_suffix=options.image_suffix(args))
