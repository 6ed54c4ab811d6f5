"""The `wetok` command line: a thin dispatcher over subcommand modules.

Each subcommand module exposes `add_arguments(parser)` and `run(args) -> int` and is listed in
`SUBCOMMANDS`. A first argument that is not a subcommand selects the original tool's
single-entry form (`wetok --input X --output Y`, mode from the extension).

Errors a user can cause (`WetokError`, and OS errors on files) print one line
`wetok: error: ...` on stderr and exit with code 2; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch

from .. import __version__
from ..errors import WetokError
from . import auto, decode, encode, evaluate, reconstruct, train

SUBCOMMANDS: list[tuple[str, str, ModuleType]] = [
    ("encode", "images -> token files (.wtok, or the original tool's JSON)", encode),
    ("decode", "token files -> images", decode),
    ("reconstruct", "images -> tokens -> images, no token file", reconstruct),
    ("evaluate", "reconstruction metrics on a folder of images (torchrun-ready)", evaluate),
    ("train", "train a tokenizer (stage 1 or 2), one process or under torchrun", train),
]
"""(name, one-line help, module with add_arguments/run): every `wetok` subcommand."""

EXIT_ERROR = 2


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wetok",
        description="WeTok discrete image tokenizer. Also the original tool's form: "
        "wetok --input IMAGE|TOKENS --output TOKENS|IMAGE [--mode encode|decode|reconstruct] ...",
    )
    parser.add_argument("--version", action="version", version=f"wetok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, module in SUBCOMMANDS:
        child = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(child)
        _add_debug(child)
        child.set_defaults(handler=module.run)
    return parser


def build_single_entry_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wetok", description="The original tool's form: the mode comes from the input's extension unless --mode names it."
    )
    auto.add_arguments(parser)
    _add_debug(parser)
    parser.set_defaults(handler=auto.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in SUBCOMMANDS}
    if argv and argv[0] not in names and argv[0] not in ("-h", "--help", "--version"):
        parser = build_single_entry_parser()
    else:
        parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors (code 2), --help/--version (code 0)
        return int(exc.code or 0)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        with _quiet(not args.debug):
            return int(handler(args))
    except (WetokError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"wetok: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (MemoryError, torch.OutOfMemoryError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"wetok: error: out of memory ({_one_line(exc)}); try a smaller --batch-size or --tile", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("wetok: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _quiet(active: bool) -> Iterator[None]:
    """Silence the Hub client's retry log and Pillow's warnings about damaged metadata it
    skipped (the command's own lines say what failed); restored afterwards."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    with warnings.catch_warnings():
        if active:
            hub.setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", module=r"PIL\.")
        try:
            yield
        finally:
            hub.setLevel(level)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, WetokError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
