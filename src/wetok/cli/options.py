"""Options shared by the subcommands (one set of model options for all of them), and their
translation into a model and a `Codec`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..batch import Summary
from ..codec import Codec
from ..config import PRESETS
from ..distributed import resolve_device
from ..errors import WetokError
from ..images import DEFAULT_MAX_PIXELS
from ..tiling import STATS_MODES, TileSpec
from ..tokenizer import Tokenizer
from ..weights import default_model_available, load


def add_inputs(parser: argparse.ArgumentParser, what: str) -> None:
    """Input paths (positional or --input/--image, repeatable) and --output."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help=f"{what}: files or directories (searched recursively)")
    parser.add_argument("--input", "--image", dest="input_flags", action="append", default=[], metavar="PATH",
                        help="an input file or directory (repeatable; same as a positional INPUT)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="output file (one input) or directory (several inputs: the inputs' layout is mirrored)")


def add_model(parser: argparse.ArgumentParser) -> None:
    """The model options, the same for every subcommand (`load_model` reads them)."""
    group = parser.add_argument_group("model")
    group.add_argument("--ckpt", metavar="FILE", help="released .ckpt file or saved wetok model directory (default: the bundled default model)")
    group.add_argument("--config", metavar="YAML", help="the released YAML config of --ckpt (architecture)")
    group.add_argument("--preset", metavar="NAME", help=f"released model: {', '.join(PRESETS)} (with --ckpt: its architecture)")
    group.add_argument("--weights", choices=("ema", "raw"), default="ema", help="EMA (default, as released tools) or raw weights")
    group.add_argument("--device", metavar="DEV", default="auto",
                       help="torch device: auto (default: cuda when available, else cpu), cpu, cuda, cuda:1; "
                       "under torchrun cuda means cuda:LOCAL_RANK")
    group.add_argument("--trust-pickle", action="store_true",
                       help="load checkpoints that need arbitrary unpickling (can run code: trusted files only)")


def model_given(args: argparse.Namespace) -> bool:
    """True when the user named a model (decoding then ignores the model a token file names)."""
    return bool(args.ckpt or args.config or args.preset)


def load_model(args: argparse.Namespace) -> Tokenizer:
    """The model the options name; without one, the bundled default model (or a clear error
    saying this build has none)."""
    if args.config and args.preset:
        raise WetokError("give either --config or --preset, not both")
    if args.config and not args.ckpt:
        raise WetokError("--config describes a checkpoint's architecture: give the checkpoint with --ckpt")
    if args.preset and args.preset not in PRESETS:
        raise WetokError(f"unknown preset {args.preset!r}; known presets: {', '.join(PRESETS)}")
    device = resolve_device(args.device)
    if args.ckpt:
        return load(args.ckpt, config=args.config or args.preset, weights=args.weights, device=device, trust_pickle=args.trust_pickle)
    if args.preset:
        return load(args.preset, weights=args.weights, device=device, trust_pickle=args.trust_pickle)
    if not default_model_available():
        raise WetokError(
            "no model given, and this wetok build has no default model yet: "
            f"pass --preset NAME ({', '.join(PRESETS)}) or --ckpt FILE [--config YAML]"
        )
    return load(None, device=device)


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
        group.add_argument("--seed", type=int, default=0, help="generative decoder noise seed: image i of the run uses seed + i (default 0)")
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


def tile_spec(args: argparse.Namespace) -> TileSpec | None:
    """The tiling of --tile / --tile-overlap / --tile-stats (None: --tile 0, never tile)."""
    if args.tile < 0 or args.tile_overlap < 0:
        raise WetokError("--tile and --tile-overlap must not be negative")
    progress = False if args.no_progress else None
    return TileSpec(args.tile, args.tile_overlap, args.tile_stats, progress) if args.tile else None


def make_codec(args: argparse.Namespace, *, sized: bool, decodes: bool) -> Codec:
    """The `Codec` of a subcommand: the model the options name (for decoding without one, each
    token file's own), sizing (`sized`), noise seed (`decodes`), batching and tiling."""
    if sized and args.max_pixels < 0:
        raise WetokError(f"--max-pixels must be 0 (no limit) or positive, got {args.max_pixels}")
    tile = tile_spec(args)
    progress = False if args.no_progress else None
    model = load_model(args) if sized or model_given(args) else None
    sizing = {"size": args.size, "resize": args.resize, "max_pixels": args.max_pixels or None} if sized else {}
    return Codec(
        model,
        tile=tile,
        seed=args.seed if decodes else 0,
        batch_size=args.batch_size,
        progress=progress,
        device=resolve_device(args.device),
        weights=args.weights,
        trust_pickle=args.trust_pickle,
        **sizing,
    )


def add_image_format(parser: argparse.ArgumentParser) -> None:
    """--image-format: the suffix of images written into an output directory."""
    parser.add_argument("--image-format", default="png", metavar="EXT", help="image format for directory outputs (default png)")


def image_suffix(args: argparse.Namespace) -> str:
    """".png" for --image-format png (or .png)."""
    return "." + args.image_format.lstrip(".")


def run_files(
    args: argparse.Namespace, action: Callable[..., Summary], verb: str, *, sized: bool, decodes: bool, **options: Any
) -> int:
    """Run a `Codec` many-files `action` (e.g. `Codec.encode_files`) over the command's inputs,
    print its summary line and return the exit code (0 all done, 1 some skipped, 2 none done)."""
    inputs = inputs_of(args)
    summary = action(make_codec(args, sized=sized, decodes=decodes), inputs, args.output, **options)
    print(summary.line(verb), file=sys.stdout)
    return summary.exit_code
