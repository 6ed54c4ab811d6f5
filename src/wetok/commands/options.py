"""Options shared by encode, decode, reconstruct and the single-entry form, and their
translation into the library's option objects."""

from __future__ import annotations

import argparse
import sys

from ..batch import Summary
from ..codec import ModelChoice, SizePolicy
from ..config import PRESETS
from ..errors import WetokError
from ..images import DEFAULT_MAX_PIXELS
from ..pipeline import RunOptions
from ..tiling import STATS_MODES, TileSpec


def add_inputs(parser: argparse.ArgumentParser, what: str) -> None:
    """Input paths (positional or --input/--image, repeatable) and --output."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help=f"{what}: files or directories (searched recursively)")
    parser.add_argument("--input", "--image", dest="input_flags", action="append", default=[], metavar="PATH",
                        help="an input file or directory (repeatable; same as a positional INPUT)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="output file (one input) or directory (several inputs: the inputs' layout is mirrored)")


def add_model(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--ckpt", metavar="FILE", help="released .ckpt file or saved wetok model directory (default: the bundled default model)")
    group.add_argument("--config", metavar="YAML", help="the released YAML config of --ckpt (architecture)")
    group.add_argument("--preset", metavar="NAME", help=f"released model: {', '.join(PRESETS)} (with --ckpt: its architecture)")
    group.add_argument("--weights", choices=("ema", "raw"), default="ema", help="EMA (default, as released tools) or raw weights")
    group.add_argument("--device", metavar="DEV", help="torch device, e.g. cpu (default), cuda, cuda:1")
    group.add_argument("--trust-pickle", action="store_true",
                       help="load checkpoints that need arbitrary unpickling (can run code: trusted files only)")


def add_size(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image size")
    group.add_argument("--size", type=int, default=256, metavar="N",
                       help="shorter side to N and centre crop N x N (default 256); 0 keeps the image's own resolution")
    group.add_argument("--resize", choices=("crop", "stretch"), default="crop",
                       help="crop: shorter side + centre crop (default); stretch: N x N bicubic, as the original tool")
    group.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                       help=f"refuse images over N pixels as possible decompression bombs (default {DEFAULT_MAX_PIXELS}; 0: no limit)")


def add_run(parser: argparse.ArgumentParser, *, decodes: bool) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per forward pass (default 8)")
    if decodes:
        group.add_argument("--seed", type=int, default=0, help="generative decoder noise seed (default 0)")
    group.add_argument("--tile", type=int, default=512, metavar="PX",
                       help="process images over 1 megapixel in overlapping PX-pixel tiles (default 512; 0: never)")
    group.add_argument("--tile-overlap", type=int, default=128, metavar="PX", help="tile overlap in pixels (default 128)")
    group.add_argument("--tile-stats", choices=STATS_MODES, default="image",
                       help="tile normalisation: image (default) uses the whole image's statistics, as untiled processing, "
                       "measured a tile at a time (memory: one tile; extra compute: a partial pass per GroupNorm, about 37 encoder "
                       "and 14 decoder passes for imagenet-d16); window normalises each tile on its own (no extra passes; less faithful)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")


def inputs_of(args: argparse.Namespace) -> list[str]:
    inputs = list(args.inputs) + list(args.input_flags)
    if not inputs:
        raise WetokError("no input given (a positional INPUT or --input PATH)")
    if not args.output:
        raise WetokError("no output given (--output PATH)")
    return inputs


def model_choice(args: argparse.Namespace) -> ModelChoice:
    return ModelChoice(args.ckpt, args.config, args.preset, args.weights, args.device, args.trust_pickle)


def size_policy(args: argparse.Namespace) -> SizePolicy:
    if args.max_pixels < 0:
        raise WetokError(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    return SizePolicy(args.size, args.resize, args.max_pixels or None)


def run_options(args: argparse.Namespace) -> RunOptions:
    if args.tile < 0 or args.tile_overlap < 0:
        raise WetokError("--tile and --tile-overlap must not be negative")
    progress = False if args.no_progress else None
    tile = TileSpec(args.tile, args.tile_overlap, args.tile_stats, progress) if args.tile else None
    return RunOptions(args.batch_size, getattr(args, "seed", 0), tile, progress)


def report(summary: Summary, verb: str) -> int:
    """Print the summary line (stdout) and return the exit code."""
    print(summary.line(verb), file=sys.stdout)
    return summary.exit_code
