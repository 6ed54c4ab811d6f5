"""`wetok sample`: class-conditional images from a generator, as PNG files or an ADM `.npz`
(one process or under torchrun; resumable: run the same command again)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..ar import load as load_generator
from ..ar.npz import ADM_KEYS, NAMED_KEYS
from ..ar.run import SamplePlan, parse_classes
from ..ar.run import run as run_sampling
from ..ar.sampling import SamplingSettings
from ..distributed import init_distributed, shutdown
from ..errors import WetokError
from ..execution import Execution
from . import options

DEFAULT_TIMEOUT_MINUTES = 30.0
DEMOS = ("digits",)
"""The generators `--demo` names (shipped inside the package)."""


def number_list(kind: type) -> object:
    """An argparse `type`: one number, or a comma list (one per sub-token)."""

    def parse(text: str) -> float | tuple[float, ...]:
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number or a comma list of numbers (one per sub-token)") from None
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: numbers must be finite")
        return values[0] if len(values) == 1 else values

    parse.__name__ = kind.__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `wetok sample`."""
    model = parser.add_argument_group("model")
    model.add_argument("--ckpt", metavar="FILE", help="released generation .ckpt, or a directory written by wetok.ar.save "
                       "(or wetok train-ar's RUN_DIR/model)")
    model.add_argument("--demo", choices=DEMOS, help="a generator shipped with wetok instead of --ckpt: digits (10 classes "
                       "of 32x32 handwritten digits; its .npz holds images and labels)")
    model.add_argument("--config", metavar="YAML", help="the released GenStage YAML of --ckpt (or a preset: B, L, XL)")
    model.add_argument("--tokenizer", metavar="MODEL", help="the tokenizer to decode with instead of the checkpoint's own "
                       "(a .ckpt, a saved directory or a tokenizer preset)")
    options.add_device(model)
    options.add_precision(model, "fp32 (default), or bf16 / fp16: the generator's and the tokenizer's weights and "
                          "activations in 16 bits (faster on GPUs; other samples than fp32's, recorded with the run)")

    what = parser.add_argument_group("what to sample")
    what.add_argument("--classes", default="all", help="'all' (default) or labels and ranges: 0,5,10-19")
    what.add_argument("--per-class", type=options.positive_option, default=50, metavar="N",
                      help="images per class (default 50: 50,000 for the 1000 ImageNet classes)")
    what.add_argument("--seed", type=options.seed_option, default=0, help="image i of the run uses seed + i (default 0)")
    what.add_argument("--cfg-scale", type=number_list(float), metavar="S",
                      help="guidance scale, one or one per sub-token (the released XL: 1.75,1.8,2.0,2.0; default 1: none; "
                      "with --demo the demo's own)")
    what.add_argument("--temperature", type=number_list(float), default=1.0, metavar="T", help="> 0, one or one per sub-token")
    what.add_argument("--top-k", type=number_list(int), default=0, metavar="K", help="0 (off) or K, one or one per sub-token")
    what.add_argument("--top-p", type=number_list(float), default=1.0, metavar="P", help="in (0, 1], 1 off; one or one per sub-token")
    what.add_argument("--uint8", choices=("round", "truncate"), default="round",
                      help="float-to-uint8 conversion (truncate: as the original sampling script)")

    out = parser.add_argument_group("output and running")
    out.add_argument("-o", "--output", type=Path, required=True, metavar="DIR|FILE.npz",
                     help="a folder of CLASS/INDEX.png files, or an ADM .npz (arr_0 images, arr_1 labels)")
    out.add_argument("--batch-size", type=options.positive_option, default=32, help="images per batch (default 32)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--timeout-minutes", type=float, default=DEFAULT_TIMEOUT_MINUTES,
                     help=f"under torchrun: how long a process waits for the others (default {DEFAULT_TIMEOUT_MINUTES:.0f})")


def run(args: argparse.Namespace) -> int:
    """Run `wetok sample`; process 0 prints where the images are."""
    if args.output.suffix.lower() not in ("", ".npz") and not args.output.is_dir():
        raise WetokError(f"{args.output}: give a folder (PNG files) or a FILE.npz")
    if not args.timeout_minutes > 0:
        raise WetokError("--timeout-minutes must be positive")
    if (args.ckpt is None) == (args.demo is None):
        raise WetokError("give the generator with --ckpt FILE or --demo NAME (one of them)")
    ckpt, cfg_scale, npz_keys = Path(args.ckpt) if args.ckpt else None, args.cfg_scale, ADM_KEYS
    if args.demo is not None:
        if args.config is not None:
            raise WetokError("--config applies to --ckpt, not to --demo")
        from ..demos.digits import CFG_SCALE, generator_dir

        ckpt, npz_keys = generator_dir(), NAMED_KEYS
        cfg_scale = CFG_SCALE if cfg_scale is None else cfg_scale
    info = init_distributed(args.device, timeout_minutes=args.timeout_minutes)
    ok = False
    try:
        device = options.checked_device(str(info.device))
        execution = Execution(args.precision)
        options.warn_if_emulated(execution, device)
        model = load_generator(ckpt, args.config, tokenizer=args.tokenizer, device=device, trust_pickle=args.trust_pickle)
        if args.precision != "fp32":
            model.to(execution.dtype)
            if model.tokenizer is not None:
                model.tokenizer.set_execution(args.precision)
        cfg = model.config
        settings = SamplingSettings.of(cfg.groups, cfg_scale=1.0 if cfg_scale is None else cfg_scale, temperature=args.temperature, top_k=args.top_k,
                                       top_p=args.top_p)
        plan = SamplePlan(parse_classes(args.classes, cfg.num_classes), args.per_class, settings, seed=args.seed, uint8=args.uint8)
        record = {"ckpt": ckpt.name if args.demo is None else f"demo {args.demo}",
                  "bytes": ckpt.stat().st_size if ckpt.is_file() else None, "generator": cfg.describe(),
                  "tokenizer": args.tokenizer and Path(args.tokenizer).name, "precision": args.precision}
        path = run_sampling(model, plan, args.output, batch_size=args.batch_size, model_record=record, info=info,
                            progress=not args.no_progress, npz_keys=npz_keys)
        ok = True
    finally:
        shutdown(info, synchronize=ok)
    if info.main:
        print(f"{plan.total} images: {path}")
    return 0
