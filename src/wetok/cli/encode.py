"""`wetok encode`: images -> token files (`.wtok`, or the original tool's JSON)."""

from __future__ import annotations

import argparse

from ..codec import Codec
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "images")
    parser.add_argument("--format", choices=("wtok", "json"), default="wtok",
                        help="token file format for directory outputs (default wtok; a file output's suffix decides)")
    options.add_model(parser)
    options.add_size(parser)
    options.add_run(parser, decodes=False)


def run(args: argparse.Namespace) -> int:
    return options.run_files(args, Codec.encode_files, "encoded", sized=True, decodes=False, token_format=args.format)
