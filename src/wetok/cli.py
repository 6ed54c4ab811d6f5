"""The `wetok` command line (placeholder until the command-line issue lands: prints help)."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import WetokError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wetok",
        description="WeTok discrete image tokenizer. The encode/decode/reconstruct, train and evaluate "
        "commands are being built; use the Python API (wetok.load, Tokenizer.encode/decode) meanwhile.",
    )
    parser.add_argument("--version", action="version", version=f"wetok {__version__}")
    commands = parser.add_subparsers(dest="command")
    from .training import command as train_command

    train_command.add_arguments(commands.add_parser("train", help="train a tokenizer (stage 1 or 2), one process or under torchrun"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "train":
        from .training import command as train_command

        try:
            return train_command.run(args)
        except WetokError as exc:
            print(f"wetok train: error: {exc}", file=sys.stderr)
            return 2
    parser.print_help()
    return 0
