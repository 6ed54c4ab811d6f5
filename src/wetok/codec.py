"""`Codec`: images (PIL images, arrays, files) to token sets and back, for one image or for many
files, the way the command line does it: sizing the picture, the generative decoder's noise,
tiling large images, writing files safely.

Sizing (`size`, `resize`):
    size N, resize "crop":    shorter side to N (bilinear, OpenCV), centre crop N x N (the
                              evaluation protocol; `images.resize_shorter_center_crop`).
    size N, resize "stretch": N x N ignoring the aspect ratio, bicubic (the original tool).
    size 0:                   the image's own resolution, padded centrally to multiples of f and
                              cropped back after decoding.

Noise: image i of a run (counted in input order, the images of a many-image token file one by
one) gets the generative decoder's noise from `seed + i` (`tokenizer.seeded_noise`), whatever
the batching.

Many files: inputs are files or directories (searched recursively); outputs mirror the inputs'
layout under an output directory; `batch.run` groups same-sized images into batches and skips
(with its reason) a file that cannot be read or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .batch import Item, Job, Summary, check_target, plan_jobs, prepare_target, run
from .config import PRESETS, ModelIdentity
from .errors import UnsafeCheckpointError, WetokError
from .execution import Execution
from .images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    MAX_SIZE,
    CropBox,
    check_target_pixels,
    crop,
    image_format,
    pad_to_multiple,
    read_image,
    resize_shorter_center_crop,
    save_image,
    stretch_resize,
    to_pil,
    to_rgb,
    to_tensor,
)
from .tiling import TileSpec, decode_tiled, encode_tiled
from .tokenizer import Tokenizer, seeded_noise
from .tokens import (
    TOKEN_SUFFIXES,
    WTOK_SUFFIX,
    GridUnknownError,
    TokenSet,
    check_compatible,
    find_beside,
    finish_json_tokens,
    model_entry_problem,
    read_tokens,
    weights_name_problem,
    write_tokens,
)
from .weights import DEFAULT_MODEL_NAME, default_model_available, load

AUTO_TILE_PIXELS = 1024 * 1024
"""Images (padded) above this many pixels are processed in tiles unless tiling is turned off."""

Resize = Literal["crop", "stretch"]


@dataclass
class PreparedImage:
    """One image ready for the encoder.

    Attributes:
        pixels: float32 (1, 3, H, W) in [-1, 1], H and W multiples of f (zero/mid-grey padding).
        crop: where the picture lies in the padded image.
        original_size: (height, width) of the file's image.
    """

    pixels: torch.Tensor
    crop: CropBox
    original_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])


@dataclass(frozen=True)
class Codec:
    """Images <-> token sets with one model and one set of options.

    Attributes:
        model: the tokenizer. None only for decoding token files, each with the model it names
            (a preset, a weights file beside it, the bundled default model).
        size: 0 (own resolution) or N pixels, with `resize` "crop" or "stretch" (module docstring).
        max_pixels: images over this many pixels are refused as possible decompression bombs
            (None: no limit).
        tile: window size for images over `AUTO_TILE_PIXELS` (None: never tile).
        seed: the generative decoder's noise seed (image i of a run uses seed + i).
        batch_size: images per forward pass (same-sized images only).
        progress: show progress bars (None: only on a terminal).
        device, weights, execution: how a model that a token file names is loaded and run (never
            with arbitrary unpickling: only a model the user names, `Codec(model=wetok.load(...,
            trust_pickle=True))` or `--ckpt FILE --trust-pickle`, is trusted). A `model` given is
            used as it is: set its precision with `wetok.load(precision=...)`.
    """

    model: Tokenizer | None = None
    size: int = 256
    resize: Resize = "crop"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    tile: TileSpec | None = field(default_factory=TileSpec)
    seed: int = 0
    batch_size: int = 8
    progress: bool | None = None
    device: str | torch.device | None = None
    weights: Literal["ema", "raw"] = "ema"
    execution: Execution = field(default_factory=Execution)
    _models: dict[tuple, Tokenizer] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 0 or self.size > MAX_SIZE:
            raise WetokError(f"--size must be 0 (own resolution) or a number of pixels up to {MAX_SIZE}, got {self.size}")
        if self.resize not in ("crop", "stretch"):
            raise WetokError(f"resize must be 'crop' or 'stretch', got {self.resize!r}")
        if self.batch_size < 1:
            raise WetokError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_pixels is not None and self.max_pixels < 0:
            raise WetokError(f"--max-pixels must be 0 (no limit) or positive, got {self.max_pixels}")
        if self.model is not None and 0 < self.size < self.model.downsample:
            raise WetokError(f"--size {self.size} is smaller than one token of this model ({self.model.downsample} pixels)")
        if self.max_pixels is not None and self.size * self.size > max(self.max_pixels, DEFAULT_MAX_PIXELS):
            raise WetokError(
                f"--size {self.size} makes {self.size}x{self.size} = {self.size * self.size} pixels per image, over the "
                f"limit of {max(self.max_pixels, DEFAULT_MAX_PIXELS)} pixels (a larger --max-pixels, or 0, lifts it)"
            )

    def _resize_limit(self) -> int | None:
        """The most pixels a resize may produce: the bomb limit, but never less than the size x
        size picture asked for (None: no limit)."""
        return None if self.max_pixels is None else max(self.max_pixels, self.size * self.size)

    def _require_model(self) -> Tokenizer:
        if self.model is None:
            raise WetokError("encoding needs a model: Codec(model=...)")
        return self.model

    # ---- one image -------------------------------------------------------------------------------
    def prepare(self, image: Image.Image | np.ndarray, source: str = "image") -> PreparedImage:
        """Size an RGB PIL image or uint8 array (H, W, 3) by `size`/`resize` and pad it to
        multiples of the model's f: float32 (1, 3, H', W') in [-1, 1].

        The pixels processed stay within `max_pixels` (but size x size is always allowed): the
        image itself at its own resolution, the resized image before the centre crop (an extreme
        aspect ratio would make it huge: 12000 x 1 at size 256 is 3,072,000 x 256); beyond, a
        `WetokError` naming `source`."""
        f = self._require_model().downsample
        array = np.asarray(to_rgb(image)) if isinstance(image, Image.Image) else np.asarray(image)
        height, width = array.shape[:2]
        if self.size == 0:
            if height < f or width < f:
                raise WetokError(f"{source}: image {width}x{height} is smaller than one token ({f}x{f} pixels)")
            check_target_pixels(height, width, (height, width), self.max_pixels, source, "processing at its own resolution")
        elif self.resize == "crop":
            array = resize_shorter_center_crop(array, self.size, max_pixels=self._resize_limit(), name=source)
        else:
            array = stretch_resize(array, self.size, max_pixels=self._resize_limit(), name=source)
        padded, box = pad_to_multiple(to_tensor(array), f)
        return PreparedImage(padded, box, (height, width))

    def load_image(self, path: str | Path) -> PreparedImage:
        """Read an image file (EXIF, modes, bomb guard: `images.read_image`) and prepare it."""
        return self.prepare(read_image(path, max_pixels=self.max_pixels), str(path))

    def encode_prepared(self, images: list[PreparedImage]) -> list[TokenSet]:
        """Encode same-sized prepared images in one batch (tiled, one at a time, when large)."""
        model = self._require_model()
        height, width = images[0].shape
        if any(im.shape != (height, width) for im in images):
            raise WetokError("a batch must hold images of one size")
        if self._tiled(height * width):
            assert self.tile is not None
            tokens = torch.cat([encode_tiled(model, im.pixels, self.tile) for im in images])
        else:
            tokens = model.encode(torch.cat([im.pixels for im in images])).cpu()
        resize = "none" if self.size == 0 else self.resize
        return [
            TokenSet(
                tokens=tokens[i : i + 1],
                bits_per_group=model.bits_per_group,
                downsample=model.downsample,
                identity=model.identity,
                crop=im.crop,
                original_size=im.original_size,
                resize=resize,  # type: ignore[arg-type]
                size=self.size,
            )
            for i, im in enumerate(images)
        ]

    def encode(self, image: Image.Image | np.ndarray | str | Path) -> TokenSet:
        """One image (PIL, uint8 array (H, W, 3) or a file) -> its one-image `TokenSet`."""
        prepared = self.load_image(image) if isinstance(image, (str, Path)) else self.prepare(image)
        return self.encode_prepared([prepared])[0]

    def decode(
        self, tokens: TokenSet, *, indices: Sequence[int] | None = None, model: Tokenizer | None = None
    ) -> torch.Tensor:
        """A token set -> its pictures: float32 (N, 3, crop.height, crop.width) in [-1, 1] on the CPU.

        Image k is image `indices[k]` of the run (default k) and gets the generative decoder's
        noise from seed + indices[k]. Large grids are decoded in tiles unless `tile` is None.
        `model` defaults to the codec's.
        """
        model = model or self._require_model()
        n = tokens.num_images
        h, w = tokens.grid
        f = model.downsample
        noise = None
        if model.config.generative:
            order = range(n) if indices is None else indices
            noise = seeded_noise((model.config.latent_channels, h, w), [self.seed + i for i in order])
        if self._tiled(h * w * f * f):
            assert self.tile is not None
            pictures = torch.cat(
                [decode_tiled(model, tokens.tokens[i : i + 1], self.tile, noise=None if noise is None else noise[i : i + 1]) for i in range(n)]
            )
        else:
            pictures = model.decode(tokens.tokens, noise=noise).float().cpu()
        if tokens.crop is None:  # set by TokenSet, unless changed afterwards
            raise WetokError("token set without its crop box: cannot be decoded")
        return crop(pictures, tokens.crop)

    def decode_images(self, tokens: TokenSet) -> list[Image.Image]:
        """A token set -> its pictures as RGB PIL images."""
        return to_pil(self.decode(tokens))

    def _tiled(self, pixels: int) -> bool:
        return self.tile is not None and pixels > AUTO_TILE_PIXELS

    # ---- the model a token file names -------------------------------------------------------------
    def open_tokens(self, path: Path) -> tuple[Tokenizer, TokenSet]:
        """Read a token file and find the model that decodes it: the codec's when it has one, else
        the one the file names (`_model_named`: a preset; the bundled default model; a weights
        file, by base name, beside the token file or in the working directory; an original JSON
        file's "config"/"ckpt" entries, relative paths without "..", beside the file or in the
        working directory). Checks that model and tokens fit together."""
        source = str(path)
        if self.model is not None:
            model = self.model
            tokens = read_tokens(path, downsample=model.downsample, groups=model.groups)
        else:
            try:
                tokens = read_tokens(path)
            except GridUnknownError as exc:
                model = self._model_named(None, exc.model_hint, source)
                tokens = read_tokens(path, downsample=model.downsample, groups=model.groups)
            else:
                model = self._model_named(tokens.identity, tokens.model_hint, source)
        if tokens.bits_per_group < 0:
            tokens = finish_json_tokens(tokens, model.config, source)
        else:
            check_compatible(tokens, model.config, source)
        return model, tokens

    def _load_once(self, ckpt: str | None, config: str | None, weights: str, source: str) -> Tokenizer:
        """The model a token file (`source`) names, loaded once per run. Never with
        `trust_pickle`: a file that needs arbitrary unpickling is refused, saying how the user can
        vouch for it (naming it with --ckpt/--preset and --trust-pickle)."""
        key = (ckpt, config, weights)
        if key not in self._models:
            try:
                ex = self.execution
                self._models[key] = load(ckpt, config=config, weights=weights, device=self.device,  # type: ignore[arg-type]
                                         trust_pickle=False, precision=ex.precision, channels_last=ex.channels_last,
                                         compile=ex.compile)
            except UnsafeCheckpointError:
                option = f"--preset {ckpt}" if ckpt in PRESETS else f"--ckpt {ckpt}"
                raise UnsafeCheckpointError(
                    f"{source}: the model it names ({ckpt}) needs arbitrary unpickling, which can run code; a model found "
                    f"through a token file is never unpickled, even with --trust-pickle: if you trust it, name it yourself "
                    f"({option} --trust-pickle)"
                ) from None
        return self._models[key]

    def _model_named(self, ident: ModelIdentity | None, hint: dict[str, str], source: str) -> Tokenizer:
        """The model a token file names, looked up only where docs/token-formats.md says: a JSON
        file's "ckpt" (and "config") when a relative path without ".." (beside the token file,
        then in the working directory); the identity's preset; the bundled default model; the
        identity's weights file when a plain base name (beside the token file, then in the
        working directory); a JSON "config" that is a preset name; the default model. A path that
        breaks these rules is not followed: one line says so (and what to pass instead)."""
        weights = ident.weights if ident and ident.weights in ("ema", "raw") else self.weights
        token_file = Path(source)
        refused: list[str] = []
        ckpt_entry = hint.get("ckpt")
        if ckpt_entry:
            problem = model_entry_problem(ckpt_entry)
            if problem:
                refused.append(f'its "ckpt" entry {_shown(ckpt_entry)} is not followed ({problem})')
            else:
                ckpt = find_beside(ckpt_entry, token_file)
                if ckpt is None:
                    raise WetokError(
                        f"{source}: the model it names ({ckpt_entry}) is not found beside it or in the working directory; "
                        "pass --ckpt (and --config)"
                    )
                return self._load_once(str(ckpt), self._config_named(hint.get("config"), token_file, source), weights, source)
        if ident and ident.preset in PRESETS:
            return self._load_once(ident.preset, None, weights, source)
        if ident and ident.weights_file == DEFAULT_MODEL_NAME and default_model_available():
            return self._load_once(None, None, "ema", source)  # the bundled default model (its architecture is checked next)
        if ident and ident.weights_file:
            problem = weights_name_problem(ident.weights_file)
            if problem:
                refused.append(f"its weights file name {_shown(ident.weights_file)} is not followed ({problem})")
            else:
                candidate = find_beside(ident.weights_file, token_file)
                if candidate is not None:
                    # a released-layout YAML of the same name beside the weights gives the architecture
                    yaml = next((str(y) for y in (candidate.with_suffix(".yaml"), candidate.with_suffix(".yml")) if y.is_file()), None)
                    return self._load_once(str(candidate), yaml if candidate.is_file() else None, weights, source)
                raise WetokError(
                    f"{source}: made with weights {ident.weights_file!r} (architecture {ident.architecture}), not found beside "
                    "the file or in the working directory; pass --ckpt"
                )
        if refused:
            raise WetokError(f"{source}: {'; '.join(refused)}; pass the model with --ckpt (and --config) or --preset")
        if hint.get("config") in PRESETS:
            return self._load_once(hint["config"], None, weights, source)
        if default_model_available():
            return self._load_once(None, None, "ema", source)
        raise WetokError(f"{source}: the file names no model it was made with; pass --ckpt/--config or --preset")

    @staticmethod
    def _config_named(entry: str | None, token_file: Path, source: str) -> str | None:
        """A JSON token file's "config" entry as a config to load: a preset name, or a followable
        relative path to an existing file (beside the token file, then in the working directory);
        None when absent or not found (the architecture is then read off the weights)."""
        if not entry:
            return None
        if entry in PRESETS:
            return entry
        problem = model_entry_problem(entry)
        if problem:
            raise WetokError(f'{source}: its "config" entry {_shown(entry)} is not followed ({problem}); pass --ckpt and --config')
        found = find_beside(entry, token_file)
        return str(found) if found is not None and found.is_file() else None

    # ---- many files --------------------------------------------------------------------------------
    def encode_files(self, inputs: list[str], output: str, *, token_format: str = "wtok") -> Summary:
        """Encode images to token files. `output` ending in `.json`/`.wtok` with one input image is
        that file; several images into one `.wtok` file are packed into it (one size only);
        otherwise `output` is a directory and each image gets a `token_format` file."""
        self._require_model()
        out_suffix = Path(output).suffix.lower()
        many = len(inputs) > 1 or any(Path(p).is_dir() for p in inputs)
        packed = many and out_suffix == WTOK_SUFFIX
        if many and out_suffix == ".json":
            raise WetokError(f"{output}: a JSON token file holds one image; give a directory or a .wtok file for several")
        jobs, ignored, single = plan_jobs(inputs, output, accept=_is_image, target_suffix=f".{token_format}", single_output=packed)
        collected: list[TokenSet] = []

        def load_job(job: Job, first: int) -> list[Item]:
            check_target(job)
            image = self.load_image(job.source)
            if not packed:
                prepare_target(job.target)
            return [Item(job.source, job.target, image.shape, image, first)]

        def process(items: list[Item]) -> list[BaseException | None]:
            results: list[BaseException | None] = []
            for item, tokens in zip(items, self.encode_prepared([it.payload for it in items])):
                try:
                    if packed:
                        _check_packable(collected, tokens, item.source)
                        collected.append(tokens)
                    else:
                        write_tokens(item.target, tokens)
                    results.append(None)
                except (WetokError, OSError) as exc:
                    results.append(exc)
            return results

        summary = self._run(jobs, load_job, process, single, ignored)
        if packed and collected:
            prepare_target(Path(output))
            write_tokens(output, pack(collected))
        return summary

    def decode_files(self, inputs: list[str], output: str, *, image_suffix: str = ".png") -> Summary:
        """Decode token files (`.wtok`, JSON) to images. A file of N > 1 images gives
        `<name>_0000.png` ... Without a model, each file's own model is used."""
        jobs, ignored, single = plan_jobs(inputs, output, accept=_is_tokens, target_suffix=image_suffix, single_output=False)

        def load_job(job: Job, first: int) -> list[Item]:
            check_target(job)
            image_format(job.target)
            model, tokens = self.open_tokens(job.source)
            prepare_target(job.target)
            targets = _image_targets(job.target, tokens.num_images)
            return [
                Item(job.source, target, (id(model), tokens.grid, tokens.crop), (model, tokens.image(i)), first + i)
                for i, target in enumerate(targets)
            ]

        def process(items: list[Item]) -> list[BaseException | None]:
            return self._decode_and_save(items[0].payload[0], [it.payload[1] for it in items], items)

        return self._run(jobs, load_job, process, single, ignored)

    def reconstruct_files(self, inputs: list[str], output: str, *, image_suffix: str = ".png") -> Summary:
        """Encode and decode images in one go (no token file); outputs are images."""
        model = self._require_model()
        jobs, ignored, single = plan_jobs(inputs, output, accept=_is_image, target_suffix=image_suffix, single_output=False)

        def load_job(job: Job, first: int) -> list[Item]:
            check_target(job)
            image_format(job.target)
            image = self.load_image(job.source)
            prepare_target(job.target)
            return [Item(job.source, job.target, (image.shape, image.crop), image, first)]

        def process(items: list[Item]) -> list[BaseException | None]:
            return self._decode_and_save(model, self.encode_prepared([it.payload for it in items]), items)

        return self._run(jobs, load_job, process, single, ignored)

    def _run(self, jobs: list[Job], load_job, process, single: bool, ignored: int) -> Summary:  # type: ignore[no-untyped-def]
        summary = run(jobs, load=load_job, process=process, batch_size=self.batch_size, total=len(jobs), single=single,
                      progress=self.progress)
        summary.ignored = ignored
        return summary

    def _decode_and_save(self, model: Tokenizer, sets: list[TokenSet], items: list[Item]) -> list[BaseException | None]:
        """Decode one-image token sets of one grid as a batch (image k's noise from its run index);
        write each item's picture."""
        pictures = self.decode(pack(sets), indices=[it.index for it in items], model=model)
        results: list[BaseException | None] = []
        for i, item in enumerate(items):
            try:
                save_image(item.target, pictures[i : i + 1])
                results.append(None)
            except (WetokError, OSError) as exc:
                results.append(exc)
        return results


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


def _check_packable(collected: list[TokenSet], tokens: TokenSet, source: Path) -> None:
    if collected and collected[0].tokens.shape != tokens.tokens.shape:
        raise WetokError(
            f"{source}: token grid {tokens.grid} differs from the first image's {collected[0].grid}; "
            "a .wtok file packs one size (use --size N, or a directory output)"
        )


def _image_targets(target: Path, count: int) -> list[Path]:
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}_{i:04d}{target.suffix}") for i in range(count)]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_tokens(path: Path) -> bool:
    return path.suffix.lower() in TOKEN_SUFFIXES


def _shown(value: str) -> str:
    """A short repr of a name read from a file, for one-line messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
