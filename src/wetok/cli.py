"""The `wetok` command line (placeholder until the command-line issue lands: prints help)."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wetok",
        description="WeTok discrete image tokenizer. The encode/decode/reconstruct, train and evaluate "
        "commands are being built; use the Python API (wetok.load, Tokenizer.encode/decode) meanwhile.",
    )
    parser.add_argument("--version", action="version", version=f"wetok {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    parser.print_help()
    return 0
