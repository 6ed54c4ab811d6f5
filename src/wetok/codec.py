"""Images to token sets and back, as the command line does it: choosing the model, sizing the
picture, generative-decoder noise, tiling for large images, writing image files safely.

Size policies (`SizePolicy`):
    size N, resize "crop":    shorter side to N (bilinear, OpenCV), centre crop N x N (the
                              evaluation protocol; `transforms.resize_shorter_center_crop`).
    size N, resize "stretch": N x N ignoring the aspect ratio, bicubic (the original tool).
    size 0:                   the image's own resolution, padded centrally to multiples of f and
                              cropped back after decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .files import atomic_write
from .config import PRESETS
from .errors import WetokError
from .images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, read_image, to_tensor, to_uint8
from .loader import default_model_available, load
from .tiling import TileSpec, decode_tiled, encode_tiled
from .tokenizer import CropBox, Tokenizer, crop, pad_to_multiple
from .tokens import GridUnknownError, ModelIdentity, TokenSet, check_compatible, finish_json_tokens, identity_of, read_tokens
from .transforms import resize_shorter_center_crop, stretch_resize

AUTO_TILE_PIXELS = 1024 * 1024
"""Images (padded) above this many pixels are processed in tiles unless tiling is turned off."""

DEFAULT_MODEL_NAME = "default_model"
"""The weights name token files record for the bundled default model."""


# ---- which model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """The model options of the command line.

    Attributes:
        ckpt: a released `.ckpt` file or a saved wetok model directory.
        config: the released YAML file for `ckpt` (or a preset name).
        preset: a preset name: its released weights, or its architecture for `ckpt`.
        weights: "ema" or "raw" (released checkpoints hold both).
        device: torch device for the model ("cpu" by default).
        trust_pickle: allow checkpoint files that need arbitrary unpickling.
    """

    ckpt: str | None = None
    config: str | None = None
    preset: str | None = None
    weights: Literal["ema", "raw"] = "ema"
    device: str | None = None
    trust_pickle: bool = False

    @property
    def given(self) -> bool:
        """True when the user named a model (decoding then ignores the token file's model)."""
        return bool(self.ckpt or self.config or self.preset)


@dataclass
class LoadedModel:
    """A loaded tokenizer and how token files should name it."""

    model: Tokenizer
    identity: ModelIdentity
    config_entry: str | None = None
    ckpt_entry: str | None = None


@dataclass
class ModelCache:
    """Loads each distinct model once (decoding many files made by the same model)."""

    loaded: dict[tuple, LoadedModel] = field(default_factory=dict)

    def get(self, choice: ModelChoice) -> LoadedModel:
        key = (choice.ckpt, choice.config, choice.preset, choice.weights, choice.device)
        if key not in self.loaded:
            self.loaded[key] = load_model(choice)
        return self.loaded[key]


def load_model(choice: ModelChoice) -> LoadedModel:
    """Load the model `choice` names; without one, the bundled default model (or a clear error
    saying there is none yet)."""
    if choice.config and choice.preset:
        raise WetokError("give either --config or --preset, not both")
    if choice.config and not choice.ckpt:
        raise WetokError("--config describes a checkpoint's architecture: give the checkpoint with --ckpt")
    if choice.ckpt:
        arch = choice.config or choice.preset
        model = load(choice.ckpt, config=arch, weights=choice.weights, device=choice.device, trust_pickle=choice.trust_pickle)
        path = Path(choice.ckpt)
        kind = "saved" if path.is_dir() else choice.weights
        # no preset name: these weights are the file's, not the preset's released ones
        ident = ModelIdentity(model.config.architecture_hash(), None, path.name, kind)
        return LoadedModel(model, ident, config_entry=choice.config or choice.preset, ckpt_entry=choice.ckpt)
    if choice.preset:
        if choice.preset not in PRESETS:
            raise WetokError(f"unknown preset {choice.preset!r}; known presets: {', '.join(PRESETS)}")
        model = load(choice.preset, weights=choice.weights, device=choice.device, trust_pickle=choice.trust_pickle)
        hub = model.config.hub
        ident = identity_of(model.config, weights_file=hub.filename if hub else None, weights=choice.weights)
        return LoadedModel(model, ident, config_entry=choice.preset, ckpt_entry=None)
    if not default_model_available():
        raise WetokError(
            "no model given, and this wetok build has no default model yet: "
            f"pass --preset NAME ({', '.join(PRESETS)}) or --ckpt FILE [--config YAML]"
        )
    model = load(None, device=choice.device)
    return LoadedModel(model, identity_of(model.config, weights_file=DEFAULT_MODEL_NAME, weights="saved"))


def open_tokens(path: Path, choice: ModelChoice, cache: ModelCache) -> tuple[LoadedModel, TokenSet]:
    """Read a token file and find the model that decodes it: the user's when given, else the one
    the file names (a preset; a weights file beside the token file or in the working directory;
    an original JSON file's "config"/"ckpt" entries, relative to the file when not found as
    given). Checks that model and tokens fit together."""
    source = str(path)
    if choice.given:
        loaded = cache.get(choice)
        tokens = read_tokens(path, downsample=loaded.model.downsample, groups=loaded.model.groups)
    else:
        try:
            tokens = read_tokens(path)
        except GridUnknownError as exc:
            loaded = cache.get(_choice_from_file(None, exc.model_hint, choice, source))
            tokens = read_tokens(path, downsample=loaded.model.downsample, groups=loaded.model.groups)
        else:
            loaded = cache.get(_choice_from_file(tokens.identity, tokens.model_hint, choice, source))
    if tokens.bits_per_group < 0:
        tokens = finish_json_tokens(tokens, loaded.model.config, source)
    else:
        check_compatible(tokens, loaded.model.config, source)
    return loaded, tokens


def _choice_from_file(ident: ModelIdentity | None, hint: dict[str, str], choice: ModelChoice, source: str) -> ModelChoice:
    base = dict(device=choice.device, trust_pickle=choice.trust_pickle)
    weights = ident.weights if ident and ident.weights in ("ema", "raw") else choice.weights
    if hint.get("ckpt"):
        ckpt = Path(hint["ckpt"])
        if not ckpt.exists():
            raise WetokError(f"{source}: the model it names ({hint['ckpt']}) is not found; pass --ckpt (and --config)")
        cfg = hint.get("config")
        usable = cfg if cfg and (cfg in PRESETS or Path(cfg).is_file()) else None
        return ModelChoice(ckpt=str(ckpt), config=usable, weights=weights, **base)  # type: ignore[arg-type]
    if ident and ident.preset in PRESETS:
        return ModelChoice(preset=ident.preset, weights=weights, **base)  # type: ignore[arg-type]
    if ident and ident.weights_file == DEFAULT_MODEL_NAME and default_model_available():
        return choice  # no model given: the bundled default model (its architecture is checked next)
    if ident and ident.weights_file:
        for folder in (Path(source).parent, Path.cwd()):
            candidate = folder / ident.weights_file
            if candidate.exists():
                # a released-layout YAML of the same name beside the weights gives the architecture
                yaml = next((str(y) for y in (candidate.with_suffix(".yaml"), candidate.with_suffix(".yml")) if y.is_file()), None)
                return ModelChoice(ckpt=str(candidate), config=yaml if candidate.is_file() else None, weights=weights, **base)  # type: ignore[arg-type]
        raise WetokError(
            f"{source}: made with weights {ident.weights_file!r} (architecture {ident.architecture}), not found beside "
            "the file or in the working directory; pass --ckpt"
        )
    if hint.get("config") in PRESETS:
        return ModelChoice(preset=hint["config"], weights=weights, **base)  # type: ignore[arg-type]
    if default_model_available():
        return choice
    raise WetokError(f"{source}: the file names no model it was made with; pass --ckpt/--config or --preset")


# ---- sizing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizePolicy:
    """How images are sized before encoding: `size` 0 = own resolution, else N with `resize`
    "crop" (shorter side + centre crop) or "stretch" (N x N bicubic)."""

    size: int = 256
    resize: Literal["crop", "stretch"] = "crop"
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.size < 0:
            raise WetokError(f"--size must be 0 (own resolution) or a positive number of pixels, got {self.size}")
        if self.resize not in ("crop", "stretch"):
            raise WetokError(f"resize must be 'crop' or 'stretch', got {self.resize!r}")


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


def prepare_image(image: Image.Image, policy: SizePolicy, downsample: int, source: str) -> PreparedImage:
    """Size an RGB PIL image by `policy` and pad it for a model with downsample factor f."""
    array = np.asarray(image)
    height, width = array.shape[:2]
    if policy.size == 0:
        if height < downsample or width < downsample:
            raise WetokError(
                f"{source}: image {width}x{height} is smaller than one token ({downsample}x{downsample} pixels)"
            )
    elif policy.size < downsample:
        raise WetokError(f"--size {policy.size} is smaller than one token ({downsample} pixels)")
    elif policy.resize == "crop":
        array = resize_shorter_center_crop(array, policy.size)
    else:
        array = stretch_resize(array, policy.size)
    padded, box = pad_to_multiple(to_tensor(array), downsample)
    return PreparedImage(padded, box, (height, width))


def load_image(path: Path, policy: SizePolicy, downsample: int) -> PreparedImage:
    """Read an image file (EXIF, modes, bomb guard: `images.read_image`) and prepare it."""
    return prepare_image(read_image(path, max_pixels=policy.max_pixels), policy, downsample, str(path))


# ---- encode / decode --------------------------------------------------------------------------
def _tiled(pixels: int, tile: TileSpec | None) -> bool:
    return tile is not None and pixels > AUTO_TILE_PIXELS


def encode_images(
    loaded: LoadedModel, images: list[PreparedImage], policy: SizePolicy, tile: TileSpec | None = TileSpec()
) -> list[TokenSet]:
    """Encode same-sized prepared images in one batch (tiled, one at a time, when large)."""
    model = loaded.model
    height, width = images[0].shape
    if any(im.shape != (height, width) for im in images):
        raise WetokError("a batch must hold images of one size")
    if _tiled(height * width, tile):
        assert tile is not None
        tokens = torch.cat([encode_tiled(model, im.pixels, tile) for im in images])
    else:
        tokens = model.encode(torch.cat([im.pixels for im in images])).cpu()
    resize = "none" if policy.size == 0 else policy.resize
    return [
        TokenSet(
            tokens=tokens[i : i + 1],
            bits_per_group=model.bits_per_group,
            downsample=model.downsample,
            identity=loaded.identity,
            crop=im.crop,
            original_size=im.original_size,
            resize=resize,  # type: ignore[arg-type]
            size=policy.size,
        )
        for i, im in enumerate(images)
    ]


def image_noise(model: Tokenizer, grid: tuple[int, int], seed: int) -> torch.Tensor | None:
    """The generative decoder's noise for one image: float32 (1, C, h, w) standard normal from a
    CPU generator seeded with `seed` (so a picture decodes the same in any batch); None for the
    plain decoder."""
    if not model.config.generative:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((1, model.config.latent_channels, *grid), generator=generator)


def decode_tokens(
    model: Tokenizer,
    tokens: TokenSet,
    *,
    noise: torch.Tensor | None = None,
    seed: int = 0,
    tile: TileSpec | None = TileSpec(),
) -> torch.Tensor:
    """A token set -> its pictures: float32 (N, 3, crop.height, crop.width) in [-1, 1] on the CPU.

    `noise` (N, C, h, w) sets the generative decoder's noise exactly; otherwise each image gets
    `image_noise(model, grid, seed)`. Large grids are decoded in tiles unless `tile` is None.
    """
    n = tokens.num_images
    h, w = tokens.grid
    f = model.downsample
    if noise is not None and tuple(noise.shape) != (n, model.config.latent_channels, h, w):
        raise WetokError(f"noise must have shape {(n, model.config.latent_channels, h, w)}, got {tuple(noise.shape)}")
    if noise is None and model.config.generative:
        noise = torch.cat([image_noise(model, (h, w), seed) for _ in range(n)])  # type: ignore[misc]
    if _tiled(h * w * f * f, tile):
        assert tile is not None
        pictures = torch.cat(
            [decode_tiled(model, tokens.tokens[i : i + 1], tile, noise=None if noise is None else noise[i : i + 1]) for i in range(n)]
        )
    else:
        pictures = model.decode(tokens.tokens, noise=noise).float().cpu()
    assert tokens.crop is not None
    return crop(pictures, tokens.crop)


# ---- writing images ---------------------------------------------------------------------------
def image_format(path: Path) -> str:
    """Pillow's format name for an output path's suffix; a clear error for unknown suffixes."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise WetokError(f"{path}: cannot tell the image format to write from the suffix {path.suffix!r} (use .png, .jpg, .webp, ...)")
    return fmt


def save_image(path: Path, pixels: torch.Tensor) -> Path:
    """Write one picture, float (1, 3, H, W) or (3, H, W) in [-1, 1], atomically (temporary file
    then rename). JPEG at quality 95."""
    fmt = image_format(path)
    image = Image.fromarray(to_uint8(pixels)[0])
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    atomic_write(path, lambda p: image.save(p, format=fmt, **options))
    return path
