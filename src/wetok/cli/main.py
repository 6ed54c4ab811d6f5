"""The `wetok` command line: a thin dispatcher over subcommand modules.

Each subcommand module exposes `add_arguments(parser)` and `run(args) -> int` and is listed in
`SUBCOMMANDS`. A first argument that is not a subcommand selects the original tool's
single-entry form (`wetok --input X --output Y`, mode from the extension).

Errors a user can cause (`WetokError`, and OS errors on files) print one line
`wetok: error: ...` on stderr and exit with code 2; `--debug` adds the traceback. Usage errors
(an unknown option, a bad option value) are one line too, exit 2, before anything is done.

Interrupts: Ctrl-C (SIGINT) prints `wetok: interrupted`, exit 130; SIGTERM (`kill`, a job
scheduler, a container stopping) prints `wetok: terminated`, exit 143. Both unwind normally, so
an output being written is left as it was (the temporary file is removed: `files.atomic_write`).
`wetok train` turns both into "stop after this step and write a checkpoint" while it trains.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import NoReturn

import torch

from .. import __version__
from ..errors import WetokError
from . import auto, decode, encode, evaluate, gfid, reconstruct, sample, tokenize, train, train_ar

SUBCOMMANDS: list[tuple[str, str, ModuleType]] = [
    ("encode", "images -> token files (.wtok, or the original tool's JSON)", encode),
    ("decode", "token files -> images", decode),
    ("reconstruct", "images -> tokens -> images, no token file", reconstruct),
    ("evaluate", "reconstruction metrics on a folder of images (torchrun-ready)", evaluate),
    ("gfid", "FID, sFID, Inception Score, precision, recall of samples (ADM evaluator protocol)", gfid),
    ("train", "train a tokenizer (stage 1 or 2), one process or under torchrun", train),
    ("tokenize", "labelled image folder -> token shards for generator training (torchrun-ready, resumable)", tokenize),
    ("train-ar", "train a class-conditional generator on token shards, one process or under torchrun", train_ar),
    ("sample", "class-conditional images from a generator: PNG files or an ADM .npz (torchrun-ready, resumable)", sample),
]
"""(name, one-line help, module with add_arguments/run): every `wetok` subcommand."""

EXIT_ERROR = 2
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by `clean_exit_on_sigterm`'s handler so that `finally`
    blocks and `except BaseException` cleanups run (a KeyboardInterrupt, so that code which
    treats Ctrl-C as "stop" treats it alike)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextmanager
def clean_exit_on_sigterm() -> Iterator[None]:
    """While active, SIGTERM raises `Terminated` in the main thread instead of killing the
    process outright (which would leave `.name.XXXX.tmp` files of an interrupted write behind).
    A second SIGTERM during the clean-up is ignored; a forked child process that inherited the
    handler is terminated as by default. The previous handler comes back afterwards; outside the
    main thread this does nothing. The trainers' own handler (`runs.signals.StopRequest`)
    takes over while it trains and gives this one back afterwards."""
    owner = os.getpid()
    fired = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if os.getpid() != owner:  # a forked child: behave as without the handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if fired:
            return
        fired = True
        raise Terminated(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `wetok: error: argument --size: ... (wetok encode --help)`, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"wetok: error: {message} (see {self.prog} --help)\n")


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser = _Parser(
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
        with clean_exit_on_sigterm(), _quiet(not args.debug):
            return int(handler(args))
    except Terminated:
        print("wetok: terminated", file=sys.stderr)
        return EXIT_TERMINATED
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
