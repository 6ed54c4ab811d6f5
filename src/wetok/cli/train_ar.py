"""`wetok train-ar`: the command-line front of `wetok.ar.training.loop.train_ar`.

    wetok train-ar --config FILE --data SHARDS --output RUN_DIR [--steps N] [--ckpt-every K]
                   [--device D] [--set section.key=value ...] [--resume [auto]] [--export]

The flags mean what they mean for `wetok train`. Under `torchrun --nproc_per_node=N -m wetok
train-ar ...` every process runs this same command (multi-node with torchrun's own flags); a
`torchrun --max-restarts N` restart resumes from the latest checkpoint by itself. SHARDS is a
folder `wetok tokenize` wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import WetokError
from .train import EXIT_PEER, add_run_arguments, ignore_file_size_signal, resolve_run_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train-ar` subcommand's options."""
    parser.add_argument("--config", type=Path, help="generator training config YAML (configs/ar-digits.yaml); optional with --resume")
    parser.add_argument("--data", type=Path, help="token shards written by wetok tokenize")
    add_run_arguments(parser)
    parser.add_argument("--export", action="store_true",
                        help="only write RUN_DIR/model from the latest checkpoint (the EMA weights when the run keeps them)")


def run(args: argparse.Namespace) -> int:
    """Execute `wetok train-ar`; returns the exit status (user errors raise `WetokError`)."""
    from ..ar.training.config import load_ar_train_config
    from ..ar.training.loop import export_latest, train_ar
    from ..distributed import PeerLost

    if args.export:
        cfg = load_ar_train_config(args.output / "config.yaml") if (args.output / "config.yaml").is_file() else None
        tokenizer = None
        if cfg is not None and cfg.tokenizer.model is not None:
            from ..weights import load as load_tokenizer

            tokenizer = load_tokenizer(cfg.tokenizer.model, config=cfg.tokenizer.config)
        path = export_latest(args.output, tokenizer=tokenizer)
        print(f"wetok train-ar: the latest checkpoint in {args.output} exported to {path}")
        return 0
    cfg = resolve_run_config(args, load_ar_train_config)
    if args.data is None:
        raise WetokError("--data is required for training (a folder of token shards from wetok tokenize)")
    if not args.data.is_dir():
        raise WetokError(f"{args.data}: no such folder of token shards")
    ignore_file_size_signal()
    try:
        return train_ar(cfg, args.data, args.output, resume=args.resume, progress=not args.no_progress)
    except PeerLost as exc:
        print(f"wetok train-ar: {exc}", file=sys.stderr, flush=True)
        return EXIT_PEER
