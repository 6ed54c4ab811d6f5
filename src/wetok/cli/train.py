"""`wetok train`: the command-line front of `wetok.training.loop.train`.

    wetok train --config FILE --data DIR --output RUN_DIR [--steps N] [--ckpt-every K]
                [--set section.key=value ...] [--resume [auto]]

Under `torchrun --nproc_per_node=N -m wetok train ...` every process runs this same command;
under `torchrun --max-restarts N` a restarted job resumes from its latest checkpoint by itself
(on one node; on several, pass `--resume auto` on every node).
When another process of the job stops, the others end with one line `wetok train: another
process stopped (...)` and exit status 2 (`EXIT_PEER`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import WetokError
from ..training.config import load_train_config

EXIT_PEER = 2
"""The exit status of a process whose peer stopped (as `wetok evaluate`'s)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` subcommand's options."""
    parser.add_argument("--config", type=Path, help="training config YAML (see configs/); optional with --resume")
    parser.add_argument("--data", type=Path, help="training images: folder, ImageNet/COCO root, or tar shards")
    add_run_arguments(parser)
    parser.add_argument("--export", action="store_true",
                        help="only write RUN_DIR/model from the latest checkpoint's EMA weights (no training)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags both trainers take (`wetok train`, `wetok train-ar`): --output, --steps,
    --ckpt-every, --device, --set and --resume (the middle four override their config's keys),
    --no-progress."""
    parser.add_argument("--output", type=Path, required=True, help="run directory: checkpoints/, logs/, samples/, model/")
    parser.add_argument("--steps", type=int, help="total optimizer steps (overrides train.steps)")
    parser.add_argument("--ckpt-every", type=int, help="checkpoint every K steps (overrides train.ckpt_every)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="auto (cuda when available, else cpu; the config's default), cpu or cuda; under torchrun "
                        "cuda means cuda:LOCAL_RANK (overrides train.device)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=2e-4 (repeatable; values are YAML)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, type=resume_mode, metavar="auto",
                        help="continue the run in --output from its latest checkpoint; --resume auto: when there is one, "
                        "else start it (for torchrun --max-restarts on several nodes; one node resumes a restart by itself)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resume_mode(value: str) -> str:
    if value != "auto":
        raise argparse.ArgumentTypeError(f"expected nothing or auto, got {value!r}")
    return value


ConfigT = TypeVar("ConfigT")


def resolve_run_config(args: argparse.Namespace, load: Callable[[Path, list[str]], ConfigT]) -> ConfigT:
    """The run's config, read by `load(path, overrides)`: --config (or, resuming, the run's saved
    config.yaml) plus --set, --steps, --ckpt-every and --device (`wetok train` and `wetok train-ar`)."""
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.ckpt_every is not None:
        overrides.append(f"train.ckpt_every={args.ckpt_every}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    saved = args.output / "config.yaml"
    if args.resume and saved.is_file():
        cfg = load(saved, overrides)
        if args.config is not None:
            given = load(args.config, overrides)
            if given != cfg:
                raise WetokError(f"--config {args.config} differs from the run's {saved}; resume without --config and "
                                 "change keys with --set")
        return cfg
    if args.config is None:
        raise WetokError("--config is required (except when resuming a run that saved its config.yaml)")
    return load(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    """Execute `wetok train`; returns the exit status (user errors raise `WetokError`)."""
    from ..training.loop import export_latest, train

    if args.export:
        path = export_latest(args.output)
        print(f"wetok train: EMA weights of the latest checkpoint in {args.output} exported to {path}")
        return 0
    cfg = resolve_run_config(args, load_train_config)
    if args.data is None:
        raise WetokError("--data is required for training")
    if not args.data.exists():
        raise WetokError(f"{args.data}: no such data directory")
    ignore_file_size_signal()
    from ..distributed import PeerLost

    try:
        return train(cfg, args.data, args.output, resume=args.resume, progress=not args.no_progress)
    except PeerLost as exc:  # every surviving process says it once; torchrun then restarts or stops the job
        print(f"wetok train: {exc}", file=sys.stderr, flush=True)
        return EXIT_PEER


def ignore_file_size_signal() -> None:
    """Ignore SIGXFSZ (Python already does at start-up; an embedding program may not), so that a
    write beyond `ulimit -f` fails with EFBIG, a one-line error, instead of killing the process."""
    if hasattr(signal, "SIGXFSZ"):
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

