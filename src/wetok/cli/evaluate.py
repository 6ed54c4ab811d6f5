"""`wetok evaluate`: the command line over `wetok.evaluate` (also under torchrun)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import WetokError
from ..evaluation import METRICS, EvalConfig, evaluate, format_table
from ..evaluation.config import DEFAULT_TIMEOUT_S
from ..evaluation.run import PeerError
from ..files import atomic_write
from . import options

DEFAULT_METRICS = "psnr,ssim,lpips,rfid,usage"
EXIT_PEER = 2
"""Exit code when another torchrun process stopped (nothing was written): as every error's."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wetok evaluate`."""
    options.add_model(parser)

    data = parser.add_argument_group("data and protocol")
    data.add_argument("--data", type=Path, required=True,
                      help="folder of images (recursive): ImageNet val (flat or class folders), COCO val2017, any folder")
    size = data.add_mutually_exclusive_group()
    size.add_argument("--size", type=options.size_option, default=256, help="shorter side resize + centre crop (default 256)")
    size.add_argument("--original-resolution", action="store_true",
                      help="no resize: pad to a multiple of the model's downsample factor and crop back")
    data.add_argument("--max-side", type=options.count_option, default=2000,
                      help="original resolution: skip images with a side above this (0: keep all; default 2000)")
    data.add_argument("--pad-multiple", type=options.positive_option, help="original resolution: pad to this multiple (default: the model's f; the original used 16)")
    data.add_argument("--limit", type=options.positive_option, help="only the first N files (sorted order)")
    data.add_argument("--uint8", choices=("round", "truncate"), default="round",
                      help="float-to-uint8 conversion for PSNR/SSIM (truncate: as the original scripts)")
    data.add_argument("--seed", type=options.seed_option, default=0, help="generative decoder noise seed (image i uses seed + i)")

    metrics = parser.add_argument_group("metrics and outputs")
    metrics.add_argument("--metrics", default=DEFAULT_METRICS,
                         help=f"comma list of {', '.join(METRICS)}, lpips (both nets), all (default {DEFAULT_METRICS})")
    metrics.add_argument("--baselines", default="", help="codecs at the tokens' bits per pixel: jpeg,webp,avif")
    metrics.add_argument("--weights-dir", type=Path,
                         help="folder searched first for vgg16-397923af.pth, alexnet-owt-7be5be79.pth, vgg.pth, alex.pth, "
                         "pt_inception-2015-12-05-6726825d.pth (then the torch hub cache)")
    metrics.add_argument("--fid-stats", type=Path, help="file of the originals' FID statistics (created or reused)")
    metrics.add_argument("--output", type=Path, default=Path("report.json"), help="report file (default report.json)")
    metrics.add_argument("--grid", help="PNG grid of originals / reconstructions / error maps (default: <output>.png; 'none': no grid)")
    metrics.add_argument("--grid-count", type=options.count_option, default=8, help="images in the grid (default 8)")
    metrics.add_argument("--per-image", action="store_true", help="also put every image's numbers in the report")

    run_group = parser.add_argument_group("running")
    run_group.add_argument("--batch-size", type=options.positive_option, default=8, help="images per batch and per shard unit (default 8)")
    run_group.add_argument("--workers", type=options.count_option, default=2, help="image-loading processes per evaluation process")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_group.add_argument("--timeout-seconds", type=float, default=DEFAULT_TIMEOUT_S,
                           help="under torchrun: how long a process waits for the others (joining, gathering the results) "
                           f"before it stops with an error; more than the processes' running times differ (default {DEFAULT_TIMEOUT_S:.0f})")


def _grid_path(args: argparse.Namespace) -> Path | None:
    if args.grid is None:
        return args.output.with_suffix(".png")
    return None if args.grid.lower() == "none" else Path(args.grid)


def _write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as exc:
        raise WetokError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _check_target(path: Path, what: str) -> None:
    """Fail before any work when `path` cannot become a file (a directory, or under a file)."""
    if path.is_dir():
        raise WetokError(f"{path}: is a directory; --{what} names a file")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise WetokError(f"{path}: cannot write: {parent} is a file, not a directory")


def run(args: argparse.Namespace) -> int:
    """Run `wetok evaluate`; process 0 writes the report (and grid) and prints the table."""
    grid_path = _grid_path(args)
    _check_target(args.output, "output")
    if grid_path is not None:
        _check_target(grid_path, "grid")
        if grid_path.resolve() == args.output.resolve():
            raise WetokError(f"{grid_path}: the grid and the report cannot be the same file")
    config = EvalConfig(
        data=args.data,
        size=None if args.original_resolution else args.size,
        metrics=args.metrics,
        batch_size=args.batch_size,
        limit=args.limit,
        max_side=args.max_side or None,
        pad_multiple=args.pad_multiple,
        uint8=args.uint8,
        seed=args.seed,
        weights_dir=args.weights_dir,
        fid_stats=args.fid_stats,
        baselines=tuple(b.strip() for b in args.baselines.split(",") if b.strip()),
        grid_count=args.grid_count if _grid_path(args) is not None else 0,
        num_workers=args.workers,
        per_image=args.per_image,
        progress=not args.no_progress,
        timeout_s=args.timeout_seconds,
    )
    model = options.load_model(args)
    source = args.ckpt or args.preset
    try:
        result = evaluate(model, config, device=model.device, model_source=str(source) if source else "wetok default model")
    except PeerError as exc:  # one line, as the notices above; the other processes end the same way
        print(f"wetok evaluate: {exc}", file=sys.stderr, flush=True)
        return EXIT_PEER
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    text = json.dumps(result.report, indent=2, allow_nan=False) + "\n"  # strict JSON: the report has no NaN
    _write(args.output, lambda p: p.write_text(text))
    if grid_path is not None and result.grid is not None:
        _write(grid_path, lambda p: result.grid.save(p, format="PNG"))
    print(format_table(result.report))
    print(f"\nreport: {args.output}" + (f", grid: {grid_path}" if grid_path is not None and result.grid is not None else ""))
    return 0
