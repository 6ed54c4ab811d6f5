"""`wetok gfid`: Inception Score, FID, sFID, precision and recall of generated samples (an `.npz`
image batch) against a reference batch, with the protocol of OpenAI's ADM evaluator
(`wetok.ar.gfid`; docs/gfid.md)."""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import WetokError
from ..files import atomic_write
from . import options

ROWS = (
    ("inception_score", "Inception Score ↑", 3),
    ("fid", "FID ↓", 4),
    ("sfid", "sFID ↓", 4),
    ("precision", "Precision ↑", 4),
    ("recall", "Recall ↑", 4),
)
"""(result key, table label, decimals) of the printed table, in the ADM evaluator's order."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wetok gfid`."""
    parser.add_argument("samples", type=Path, metavar="SAMPLES.npz",
                        help="generated images: an .npz file whose arr_0 is N x H x W x 3 uint8")
    parser.add_argument("--reference", type=Path, required=True, metavar="REF.npz",
                        help="reference batch, e.g. ADM's VIRTUAL_imagenet256_labeled.npz (its precomputed statistics are used)")
    parser.add_argument("--batch-size", type=options.positive_option, default=64, metavar="N",
                        help="images per forward pass (default 64, as the ADM evaluator)")
    parser.add_argument("--device", metavar="DEV", default="auto",
                        help="torch device: auto (default: cuda when available, else cpu), cpu, cuda, cuda:1")
    parser.add_argument("--weights-dir", type=Path,
                        help="folder searched first for pt_inception-2015-12-05-6726825d.pth (then the torch hub cache)")
    parser.add_argument("--output", type=Path, metavar="report.json", help="also write the results as JSON to this file")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the reference's cached features (~/.cache/wetok/gfid)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")


def _check_output(path: Path) -> None:
    """Fail before any work when `path` cannot become a file (a directory, or under a file)."""
    if path.is_dir():
        raise WetokError(f"{path}: is a directory; --output names a file")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise WetokError(f"{path}: cannot write: {parent} is a file, not a directory")


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def format_table(result: dict[str, Any]) -> str:
    """The results as a markdown table, then one line on the data."""
    lines = ["| metric | value |", "|---|---:|"]
    for key, label, digits in ROWS:
        value = result[key]
        lines.append(f"| {label} | {'–' if value is None or not math.isfinite(value) else f'{value:.{digits}f}'} |")
    lines.append("")
    lines.append(f"{result['num_samples']} samples against {result['num_reference']} reference images "
                 f"({result['reference_statistics']} reference statistics), ADM evaluator protocol")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run `wetok gfid`: print the table, and write the JSON report when --output is given."""
    from ..ar.gfid import evaluate_samples

    if args.output is not None:
        _check_output(args.output)
    device = options.checked_device(args.device)
    result = evaluate_samples(args.samples, args.reference, weights_dir=args.weights_dir, device=device,
                              batch_size=args.batch_size, progress=False if args.no_progress else None,
                              use_cache=not args.no_cache)
    if args.output is not None:
        import numpy
        import torch

        report = {
            "metrics": {key: _finite_or_none(result[key]) for key, _, _ in ROWS},
            **{k: v for k, v in result.items() if k not in {key for key, _, _ in ROWS}},
            "samples": str(args.samples),
            "reference": str(args.reference),
            "batch_size": args.batch_size,
            "device": str(device),
            "versions": {"wetok": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
                         "python": platform.python_version()},
        }
        text = json.dumps(report, indent=2, allow_nan=False) + "\n"
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.output, lambda p: p.write_text(text))
        except OSError as exc:
            raise WetokError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
    print(format_table(result))
    if args.output is not None:
        print(f"\nreport: {args.output}")
    sys.stdout.flush()
    return 0
