"""The three file operations over any number of files: encode (images -> token files), decode
(token files -> images), reconstruct (images -> images through the tokens).

Each takes input paths (files or directories), an output path and the options, runs the
many-files driver (`wetok.batch.run`) and returns its `Summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .batch import Item, Job, Summary, check_target, plan_jobs, prepare_target, run
from .codec import (
    ModelCache,
    ModelChoice,
    SizePolicy,
    decode_tokens,
    encode_images,
    image_format,
    load_image,
    load_model,
    open_tokens,
    save_image,
)
from .images import IMAGE_SUFFIXES
from .errors import WetokError
from .tiling import TileSpec
from .tokenizer import Tokenizer
from .tokens import TOKEN_SUFFIXES, WTOK_SUFFIX, TokenSet, write_tokens


@dataclass(frozen=True)
class RunOptions:
    """Options shared by the three operations.

    Attributes:
        batch_size: images per forward pass (same-sized images only).
        seed: the generative decoder's noise seed (each image gets noise from this seed).
        tile: window size for large images (None: never tile).
        progress: show the progress bar (None: only on a terminal).
    """

    batch_size: int = 8
    seed: int = 0
    tile: TileSpec | None = TileSpec()
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise WetokError(f"--batch-size must be at least 1, got {self.batch_size}")


def _check_size(policy: SizePolicy, downsample: int) -> None:
    if 0 < policy.size < downsample:
        raise WetokError(f"--size {policy.size} is smaller than one token of this model ({downsample} pixels)")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_tokens(path: Path) -> bool:
    return path.suffix.lower() in TOKEN_SUFFIXES


def encode_files(
    inputs: list[str], output: str, choice: ModelChoice, policy: SizePolicy, options: RunOptions, *, token_format: str = "wtok"
) -> Summary:
    """Encode images to token files. `output` ending in `.json`/`.wtok` with one input image is
    that file; several images into one `.wtok` file are packed into it (one size only);
    otherwise `output` is a directory and each image gets a `token_format` file."""
    out_suffix = Path(output).suffix.lower()
    many = len(inputs) > 1 or any(Path(p).is_dir() for p in inputs)
    packed = many and out_suffix == WTOK_SUFFIX
    if many and out_suffix == ".json":
        raise WetokError(f"{output}: a JSON token file holds one image; give a directory or a .wtok file for several")
    jobs, ignored, single = plan_jobs(inputs, output, accept=_is_image, target_suffix=f".{token_format}", single_output=packed)
    loaded = load_model(choice)
    f = loaded.model.downsample
    _check_size(policy, f)
    collected: list[TokenSet] = []

    def load(job: Job) -> list[Item]:
        check_target(job)
        image = load_image(job.source, policy, f)
        if not packed:
            prepare_target(job.target)
        return [Item(job.source, job.target, image.shape, image)]

    def process(items: list[Item]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        token_sets = encode_images(loaded, [it.payload for it in items], policy, options.tile)
        for item, tokens in zip(items, token_sets):
            try:
                if packed:
                    if collected and collected[0].tokens.shape != tokens.tokens.shape:
                        raise WetokError(
                            f"{item.source}: token grid {tokens.grid} differs from the first image's {collected[0].grid}; "
                            "a .wtok file packs one size (use --size N, or a directory output)"
                        )
                    collected.append(tokens)
                else:
                    write_tokens(item.target, tokens, config=loaded.config_entry, ckpt=loaded.ckpt_entry)
                results.append(None)
            except (WetokError, OSError) as exc:
                results.append(exc)
        return results

    summary = run(jobs, load=load, process=process, batch_size=options.batch_size, total=len(jobs), single=single, progress=options.progress)
    summary.ignored = ignored
    if packed and collected:
        prepare_target(Path(output))
        write_tokens(output, pack(collected))
    return summary


def pack(token_sets: list[TokenSet]) -> TokenSet:
    """Several one-image token sets of one grid -> one N-image set (for a packed `.wtok` file).
    The original size is kept when all agree, else recorded as 0 x 0 (various)."""
    first = token_sets[0]
    sizes = {ts.original_size for ts in token_sets}
    crops = {ts.crop for ts in token_sets}
    if len(crops) > 1:
        raise WetokError("packed images must share one crop box (encode them with --size N)")
    return TokenSet(
        tokens=torch.cat([ts.tokens for ts in token_sets]),
        bits_per_group=first.bits_per_group,
        downsample=first.downsample,
        identity=first.identity,
        crop=first.crop,
        original_size=first.original_size if len(sizes) == 1 else (0, 0),
        resize=first.resize,
        size=first.size,
    )


def _image_targets(target: Path, count: int) -> list[Path]:
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}_{i:04d}{target.suffix}") for i in range(count)]


def decode_files(inputs: list[str], output: str, choice: ModelChoice, options: RunOptions, *, image_suffix: str = ".png") -> Summary:
    """Decode token files (`.wtok`, JSON) to images. A file of N > 1 images gives
    `<name>_0000.png` ... Without `choice`, each file's own model is used."""
    jobs, ignored, single = plan_jobs(inputs, output, accept=_is_tokens, target_suffix=image_suffix, single_output=False)
    cache = ModelCache()

    def load(job: Job) -> list[Item]:
        check_target(job)
        image_format(job.target)
        loaded, tokens = open_tokens(job.source, choice, cache)
        prepare_target(job.target)
        targets = _image_targets(job.target, tokens.num_images)
        return [
            Item(job.source, target, (id(loaded), tokens.grid, tokens.crop), (loaded, tokens.image(i)))
            for i, target in enumerate(targets)
        ]

    def process(items: list[Item]) -> list[BaseException | None]:
        return _decode_and_save(items[0].payload[0].model, [it.payload[1] for it in items], items, options)

    summary = run(jobs, load=load, process=process, batch_size=options.batch_size, total=len(jobs), single=single, progress=options.progress)
    summary.ignored = ignored
    return summary


def _decode_and_save(model: Tokenizer, sets: list[TokenSet], items: list[Item], options: RunOptions) -> list[BaseException | None]:
    """Decode one-image token sets of one grid and crop as a batch; write each item's picture."""
    pictures = decode_tokens(model, pack(sets), seed=options.seed, tile=options.tile)
    results: list[BaseException | None] = []
    for i, item in enumerate(items):
        try:
            save_image(item.target, pictures[i : i + 1])
            results.append(None)
        except (WetokError, OSError) as exc:
            results.append(exc)
    return results


def reconstruct_files(
    inputs: list[str], output: str, choice: ModelChoice, policy: SizePolicy, options: RunOptions, *, image_suffix: str = ".png"
) -> Summary:
    """Encode and decode images in one go (no token file); outputs are images."""
    jobs, ignored, single = plan_jobs(inputs, output, accept=_is_image, target_suffix=image_suffix, single_output=False)
    loaded = load_model(choice)
    f = loaded.model.downsample
    _check_size(policy, f)

    def load(job: Job) -> list[Item]:
        check_target(job)
        image_format(job.target)
        image = load_image(job.source, policy, f)
        prepare_target(job.target)
        return [Item(job.source, job.target, (image.shape, image.crop), image)]

    def process(items: list[Item]) -> list[BaseException | None]:
        sets = encode_images(loaded, [it.payload for it in items], policy, options.tile)
        return _decode_and_save(loaded.model, sets, items, options)

    summary = run(jobs, load=load, process=process, batch_size=options.batch_size, total=len(jobs), single=single, progress=options.progress)
    summary.ignored = ignored
    return summary
