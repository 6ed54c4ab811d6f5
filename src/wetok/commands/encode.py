"""`wetok encode`: images -> token files (`.wtok`, or the original tool's JSON)."""

from __future__ import annotations

import argparse

from ..pipeline import encode_files
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inputs(parser, "images")
    parser.add_argument("--format", choices=("wtok", "json"), default="wtok",
                        help="token file format for directory outputs (default wtok; a file output's suffix decides)")
    options.add_model(parser)
    options.add_size(parser)
    options.add_run(parser, decodes=False)


def run(args: argparse.Namespace) -> int:
    summary = encode_files(
        options.inputs_of(args), args.output, options.model_choice(args), options.size_policy(args),
        options.run_options(args), token_format=args.format,
    )
    return options.report(summary, "encoded")
