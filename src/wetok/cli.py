"""The `wetok` command line (subcommands are being added; use the Python API meanwhile)."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import WetokError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wetok",
        description="WeTok discrete image tokenizer. The encode/decode/reconstruct and train commands are being "
        "built; use the Python API (wetok.load, Tokenizer.encode/decode) meanwhile.",
    )
    parser.add_argument("--version", action="version", version=f"wetok {__version__}")
    commands = parser.add_subparsers(dest="command")
    from . import evaluate_cli
    from .training import command as train_command

    evaluate_parser = commands.add_parser("evaluate", help="reconstruction metrics on a folder of images (torchrun-ready)")
    evaluate_cli.add_arguments(evaluate_parser)
    evaluate_parser.set_defaults(run=evaluate_cli.run)
    train_parser = commands.add_parser("train", help="train a tokenizer (stage 1 or 2), one process or under torchrun")
    train_command.add_arguments(train_parser)
    train_parser.set_defaults(run=train_command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except WetokError as exc:
        print(f"wetok {args.command}: error: {exc}", file=sys.stderr)
        return 2
