"""Options shared by the subcommands (one set of model options for all of them), and their
translation into a model and a `Codec`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from ..batch import Summary
from ..codec import Codec
from ..config import PRESETS
from ..distributed import resolve_device
from ..errors import WetokError
from ..execution import PRECISIONS, Execution, runs_natively
from ..images import DEFAULT_MAX_PIXELS, MAX_SIZE
from ..tiling import STATS_MODES, TileSpec
from ..tokenizer import Tokenizer
from ..weights import default_model_available, load

# ---- option values, checked when the command line is parsed (one line, exit 2, nothing done) ----
MAX_SEED_OPTION = 2**62
"""The largest --seed: image i of a run uses seed + i, which must stay a 64-bit generator seed
(`tokenizer.MAX_SEED`, 2**63 - 1) for any number of images a run can hold (2**62 more)."""


def int_option(low: int, high: int | None = None, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse `type`: an integer in [low, high] (no upper bound when high is None), or 0 as
    well when `zero` (0 then means "off" / "no limit"); anything else is a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if (zero and value == 0) or (value >= low and (high is None or value <= high)):
            return value
        span = f"{low}..{high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(f"must be {'0 or ' if zero else ''}{span}, got {value}")

    parse.__name__ = "int"
    return parse


seed_option = int_option(0, MAX_SEED_OPTION)
"""--seed: 0..2**62 (image i uses seed + i, a 64-bit generator seed)."""
size_option = int_option(0, MAX_SIZE)
"""--size: 0 (own resolution) or 1..65535 pixels (the .wtok header's 16-bit size field)."""
positive_option = int_option(1)
"""--batch-size and the like: 1 or more."""
count_option = int_option(0)
"""--max-pixels, --tile-overlap and the like: 0 or more."""
tile_option = int_option(2, zero=True)
"""--tile: 0 (never tile) or at least 2 pixels (and at least 2 token cells of the model: `make_codec`)."""


def checked_device(name: str) -> torch.device:
    """The device --device names (`distributed.resolve_device`: an unknown name or CUDA without a
    GPU is a one-line `WetokError`), refusing kinds the command line does not run on (meta, mps,
    xpu, ...: they would fail later with a traceback)."""
    device = resolve_device(name)
    if device.type not in ("cpu", "cuda"):
        raise WetokError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def image_format_option(text: str) -> str:
    """--image-format: a plain suffix (letters and digits, e.g. png, jpg, webp; a leading dot is
    allowed) of a format Pillow can write; returned lower case without the dot."""
    name = text.removeprefix(".")
    if not re.fullmatch(r"[A-Za-z0-9]{1,16}", name):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image suffix (letters and digits only, such as png, jpg, webp)")
    fmt = Image.registered_extensions().get("." + name.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise argparse.ArgumentTypeError(f"{text!r}: Pillow cannot write images with this suffix (use png, jpg, webp, ...)")
    return name.lower()


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
    add_device(group)
    add_execution(group)


def add_execution(group: argparse._ArgumentGroup) -> None:
    """--precision and --compile: how the tokenizer runs (`wetok.execution`)."""
    add_precision(group, "fp32 (default: exactly the released models' tokens), or bf16 / fp16: weights and "
                  "activations in 16 bits, channels_last; faster on GPUs and on CPUs with AMX or AVX512-BF16, "
                  "a few tokens differ (docs/speed.md)")
    group.add_argument("--channels-last", action="store_true",
                       help="activations in NHWC layout (always so with bf16/fp16); with fp32 faster on most CPUs, "
                       "tokens equal up to float32 rounding")
    group.add_argument("--compile", action="store_true",
                       help="run the tokenizer through torch.compile (each new image size compiles first: tens of seconds)")


def add_precision(group: argparse._ArgumentGroup, help: str) -> None:
    """--precision: fp32 (default), bf16 or fp16."""
    group.add_argument("--precision", choices=PRECISIONS, default="fp32", help=help)


def execution_of(args: argparse.Namespace) -> Execution:
    """The `Execution` that --precision, --channels-last and --compile name."""
    return Execution(args.precision, True if args.channels_last else None, args.compile)


def warn_if_emulated(execution: Execution, device: torch.device) -> None:
    """One line on stderr when `device` has no arithmetic for the precision asked for."""
    if runs_natively(execution.precision, device) is False:
        print(f"wetok: warning: this {device.type.upper()} has no {execution.precision} arithmetic (on a CPU: AVX512-BF16/FP16 "
              f"or AMX); {execution.precision} is emulated and slower than fp32 here", file=sys.stderr)


def add_device(group: argparse._ArgumentGroup) -> None:
    """--device and --trust-pickle: the model options every subcommand has, tokenizer or generator."""
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
    device = checked_device(args.device)
    ex = execution_of(args)
    warn_if_emulated(ex, device)
    run = {"device": device, "precision": ex.precision, "channels_last": ex.channels_last, "compile": ex.compile}
    if args.ckpt:
        return load(args.ckpt, config=args.config or args.preset, weights=args.weights, trust_pickle=args.trust_pickle, **run)
    if args.preset:
        return load(args.preset, weights=args.weights, trust_pickle=args.trust_pickle, **run)
    if not default_model_available():
        raise WetokError(
            "no model given, and this wetok build has no default model yet: "
            f"pass --preset NAME ({', '.join(PRESETS)}) or --ckpt FILE [--config YAML]"
        )
    return load(None, **run)


def add_size(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image size")
    group.add_argument("--size", type=size_option, default=256, metavar="N",
                       help=f"shorter side to N and centre crop N x N (default 256, at most {MAX_SIZE}); 0 keeps the image's own resolution")
    group.add_argument("--resize", choices=("crop", "stretch"), default="crop",
                       help="crop: shorter side + centre crop (default); stretch: N x N bicubic, as the original tool")
    group.add_argument("--max-pixels", type=count_option, default=DEFAULT_MAX_PIXELS, metavar="N",
                       help=f"refuse images, and resize results, over N pixels as possible decompression bombs "
                       f"(default {DEFAULT_MAX_PIXELS}; 0: no limit)")


def add_run(parser: argparse.ArgumentParser, *, decodes: bool) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--batch-size", type=positive_option, default=8, metavar="N", help="images per forward pass (default 8)")
    if decodes:
        group.add_argument("--seed", type=seed_option, default=0,
                           help=f"generative decoder noise seed, 0..{MAX_SEED_OPTION}: image i of the run uses seed + i (default 0)")
    group.add_argument("--tile", type=tile_option, default=512, metavar="PX",
                       help="process images over 1 megapixel in overlapping PX-pixel tiles, at least 2 token cells "
                       "(default 512; 0: never)")
    group.add_argument("--tile-overlap", type=count_option, default=128, metavar="PX",
                       help="tile overlap in pixels, less than half the tile (default 128)")
    group.add_argument("--tile-stats", choices=STATS_MODES, default="image",
                       help="tile normalisation: image (default) uses the whole image's statistics, as untiled processing, "
                       "measured a tile at a time (memory: one tile plus up to 1 GiB of kept activations, the rest in a temporary "
                       "directory; time: about 1.5-1.8x window's); window normalises each tile on its own (one pass; less faithful)")
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
    device = checked_device(args.device)  # a missing CUDA device is one line before anything loads
    model = load_model(args) if sized or model_given(args) else None
    if model is None:
        warn_if_emulated(execution_of(args), device)
    if model is not None and tile is not None:
        check_tile(tile, model.downsample)
    sizing = {"size": args.size, "resize": args.resize, "max_pixels": args.max_pixels or None} if sized else {}
    return Codec(
        model,
        tile=tile,
        seed=args.seed if decodes else 0,
        batch_size=args.batch_size,
        progress=progress,
        device=device,
        weights=args.weights,
        execution=execution_of(args),
        **sizing,
    )


def check_tile(tile: TileSpec, downsample: int) -> None:
    """Refuse (one line) a --tile under 2 token cells of a model with downsample factor
    `downsample`, or an overlap of half the tile or more (`TileSpec.cells`)."""
    if tile.tile < 2 * downsample:
        raise WetokError(f"--tile {tile.tile} is smaller than 2 token cells of this model ({2 * downsample} pixels); use 0 to never tile")
    tile.cells(downsample)


def add_image_format(parser: argparse.ArgumentParser) -> None:
    """--image-format: the suffix of images written into an output directory."""
    parser.add_argument("--image-format", default="png", type=image_format_option, metavar="EXT",
                        help="image format for directory outputs: a suffix Pillow writes, such as png, jpg, webp (default png)")


def image_suffix(args: argparse.Namespace) -> str:
    """".png" for --image-format png (or .png); checked again here for namespaces built by hand."""
    try:
        return "." + image_format_option(args.image_format)
    except argparse.ArgumentTypeError as exc:
        raise WetokError(f"--image-format: {exc}") from None


def run_files(
    args: argparse.Namespace, action: Callable[..., Summary], verb: str, *, sized: bool, decodes: bool, **options: Any
) -> int:
    """Run a `Codec` many-files `action` (e.g. `Codec.encode_files`) over the command's inputs,
    print its summary line and return the exit code (0 all done, 1 some skipped, 2 none done)."""
    inputs = inputs_of(args)
    summary = action(make_codec(args, sized=sized, decodes=decodes), inputs, args.output, **options)
    print(summary.line(verb), file=sys.stdout)
    return summary.exit_code
