"""`wetok tokenize`: a labelled image folder -> token shards for generator training
(`wetok.ar.tokenize`; one process or under torchrun; resumable: run the same command again).

    wetok tokenize --data DIR --output SHARDS [--preset NAME | --ckpt FILE [--config YAML]]
                   [--size 256] [--augment none|flip|tencrop] [--crop-range 1.1] [--batch-size 32]
                   [--shard-size 10000] [--workers N] [--layout auto|folder|imagenet] [--split train]
    torchrun --nproc_per_node=N -m wetok tokenize ...
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..ar.shards import AUGMENT_VIEWS, MANIFEST_NAME
from ..ar.tokenize import DEFAULT_CROP_RANGE, TokenizeSettings, tokenize
from ..batch import Summary
from ..distributed import PeerLost, init_distributed, peer_failure, shutdown
from ..errors import WetokError
from ..images import MAX_SIZE
from ..sources import LAYOUTS
from . import options

DEFAULT_TIMEOUT_MINUTES = 30.0


def crop_range_option(text: str) -> float:
    """--crop-range: a number from 1 to 4."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not (math.isfinite(value) and 1.0 <= value <= 4.0):
        raise argparse.ArgumentTypeError(f"must be from 1 to 4, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wetok tokenize`."""
    options.add_model(parser)

    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, required=True, metavar="DIR",
                      help="image folder: one sub-folder per class (labels 0.. in sorted order), ImageNet's train/ "
                      "(DIR/train/<wnid>/...), or images directly (one class)")
    data.add_argument("--layout", choices=LAYOUTS, default="auto",
                      help="auto (default): DIR/SPLIT/ when it exists, else DIR; folder: the classes are DIR's sub-folders; "
                      "imagenet: DIR/SPLIT/ must exist")
    data.add_argument("--split", default="train", help="the split folder of --layout auto/imagenet (default train)")
    data.add_argument("-o", "--output", type=Path, required=True, metavar="SHARDS",
                      help="folder of the token shards (created; rerun the same command to resume)")

    views = parser.add_argument_group("preprocessing (as LlamaGen extracts codes)")
    views.add_argument("--size", type=options.int_option(1, MAX_SIZE), default=256, metavar="N",
                       help="ADM centre crop to N x N (default 256), a multiple of the tokenizer's downsample factor")
    views.add_argument("--augment", choices=tuple(AUGMENT_VIEWS), default="flip",
                       help="views per image: none (1), flip (default: the crop and its mirror, 2), tencrop (10: "
                       "TenCrop of an N * crop-range centre crop)")
    views.add_argument("--crop-range", type=crop_range_option, default=DEFAULT_CROP_RANGE, metavar="R",
                       help=f"tencrop: crop from a centre crop of int(N * R) pixels (default {DEFAULT_CROP_RANGE})")

    run_group = parser.add_argument_group("running")
    run_group.add_argument("--batch-size", type=options.positive_option, default=32, metavar="N",
                           help="images per forward pass, their views together (default 32)")
    run_group.add_argument("--shard-size", type=options.positive_option, default=10000, metavar="N",
                           help="images per shard file (default 10000); the unit of resuming and of work per process")
    run_group.add_argument("--workers", type=options.count_option, default=2, metavar="N",
                           help="image-loading processes per tokenizing process (default 2; 0: in the process)")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    run_group.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="M",
                           help="under torchrun: how long a process waits for the others, longer than one shard takes "
                           f"(default {DEFAULT_TIMEOUT_MINUTES:.0f})")


def run(args: argparse.Namespace) -> int:
    """Run `wetok tokenize`; process 0 prints what was made. Exit 0, or 1 when images were skipped."""
    if not args.timeout_minutes > 0:
        raise WetokError("--timeout-minutes must be positive")
    settings = TokenizeSettings(size=args.size, augment=args.augment, crop_range=args.crop_range, shard_size=args.shard_size,
                                batch_size=args.batch_size, workers=args.workers, precision=args.precision)
    info = init_distributed(args.device, timeout_minutes=args.timeout_minutes)
    ok = False
    try:
        # loaded in float32, whose weights the manifest fingerprints; tokenize() applies --precision
        loading = {**vars(args), "device": str(info.device), "precision": "fp32", "channels_last": False,
                   "compile": False}
        options.warn_if_emulated(options.execution_of(args), info.device)
        model = options.load_model(argparse.Namespace(**loading))
        try:
            result = tokenize(model, args.data, args.output, settings, info=info, layout=args.layout, split=args.split,
                              progress=False if args.no_progress else None, compile=args.compile,
                              channels_last=True if args.channels_last else None)
        except WetokError:
            raise
        except Exception as exc:  # a collective failing: another process stopped
            cause = peer_failure(exc)
            if cause is None:
                raise
            raise PeerLost(f"another process stopped ({cause})") from None
        ok = True
    finally:
        shutdown(info, synchronize=ok)
    if not info.main or result.manifest is None:
        return 0
    m = result.manifest
    reasons = dict(result.skipped)
    summary = Summary(done=m.images, skipped=[(p, reasons.get(p, f"{p}: unreadable")) for p in m.unreadable])
    if not result.shards_written:
        work = ", already complete"
    else:
        earlier = f" ({result.shards_skipped} from an earlier run)" if result.shards_skipped else ""
        work = f"{earlier}; {result.processed} files read in {result.seconds:.1f} s ({result.images_per_s:.1f} images/s)"
    listed = f"; unreadable images listed in {args.output / MANIFEST_NAME}" if m.unreadable else ""
    print(f"{summary.line('tokenized')} into {args.output}: {m.rows} rows ({m.views} view(s) of {m.grid[0]}x{m.grid[1]}x{m.groups} "
          f"tokens), {len(m.shards)} shard(s){work}{listed}")
    return summary.exit_code
