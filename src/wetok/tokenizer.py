"""`Tokenizer`: encoder + group-wise lookup-free quantizer + (generative) decoder.

Conventions (all public methods):
    images: float (B, 3, H, W) in [-1, 1] (any float dtype; moved to the model's device/dtype).
    tokens: int64 (B, h, w, G) with h = H/f, w = W/f, values in [0, 2**b); bit i of the token of
        group g is the sign of latent channel g*b + i (1 where positive).
    codes: float (B, C, h, w) in {-1, +1}, the quantized latent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import ModelIdentity, TokenizerConfig
from .errors import WetokError
from .execution import Execution, exact_float32
from .images import crop, pad_to_multiple
from .nn import Decoder, Encoder, GroupLFQ, QuantizerOutput

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


def _exact_when_inferring() -> AbstractContextManager[None]:
    """IEEE float32 arithmetic (`exact_float32`) for inference; a training pass (gradients on)
    keeps the process's settings, e.g. cuDNN's TF32 convolutions, since a training step needs no
    bit-for-bit agreement across machines."""
    return nullcontext() if torch.is_grad_enabled() else exact_float32()


def seeded_noise(latent_shape: tuple[int, int, int], seeds: Sequence[int]) -> torch.Tensor:
    """The generative decoder's noise: float32 (len(seeds), C, h, w) for a latent of shape
    (C, h, w), image k standard normal from a CPU generator seeded with `seeds[k]`.

    The seeding rule of every wetok tool (`Tokenizer.decode(seed=...)`, `Codec`, the command line,
    evaluation, training's held-out evaluation): image i of a run, counted in the order of its
    inputs (a file that cannot be read counts as one image, a token file of N images as N), gets
    `seed + i`, so a picture decodes the same whatever the batching.

    Every seed must be an integer in [0, 2**63) (`MAX_SEED`); others raise `WetokError`.
    """
    noise = torch.empty((len(seeds), *latent_shape))
    for k, seed in enumerate(seeds):
        try:
            value = int(seed)
        except (TypeError, ValueError, OverflowError):
            raise WetokError(f"noise seed {seed!r} is not an integer") from None
        if not 0 <= value <= MAX_SEED:
            raise WetokError(f"noise seed {value} is outside 0..{MAX_SEED} (image i of a run uses seed + i)")
        noise[k] = torch.randn(latent_shape, generator=torch.Generator().manual_seed(value))
    return noise


MAX_SEED = 2**63 - 1
"""The largest noise seed `seeded_noise` takes (a 64-bit generator seed, signed range)."""


@dataclass
class TokenizerOutput:
    """The result of `Tokenizer.forward` (training): reconstruction and quantizer output."""

    reconstruction: torch.Tensor
    quantizer: QuantizerOutput
    latent: torch.Tensor


class Tokenizer(nn.Module):
    """The WeTok tokenizer.

    Build an untrained model with `Tokenizer(config)` (works on the meta device too), or load
    released / saved weights with `wetok.load`. State-dict keys are `encoder.*` and `decoder.*`,
    exactly those of the released checkpoints.

    `identity` says which model this is, as token files record it: `wetok.load` sets where the
    weights came from; a model built here has only its architecture hash.

    `execution` says how it runs (`wetok.execution.Execution`): float32 on contiguous tensors
    unless `set_execution` (or `wetok.load(precision=...)`) picked the fast path.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.identity = ModelIdentity(config.architecture_hash())
        self.encoder = Encoder(config)
        self.quantizer = GroupLFQ(config.latent_channels, config.groups)
        self.decoder = Decoder(config)
        self.execution = Execution()

    def set_execution(
        self, precision: str = "fp32", *, channels_last: bool | None = None, compile: bool = False
    ) -> "Tokenizer":
        """Run in `precision` ("fp32", "bf16" or "fp16"), with channels_last activations (None: on
        for bf16/fp16) and optionally `torch.compile`; see `wetok.execution`. Weights are
        converted once, here (a float32 copy is not kept: going back to fp32 keeps the rounding,
        so reload for exact float32). Compilation, once on, stays on. Returns self."""
        execution = Execution(precision, channels_last, compile)
        self.to(dtype=execution.dtype, memory_format=execution.memory_format)
        if execution.compile and not self.execution.compile:
            self.encoder.compile()
            self.decoder.compile()
        self.execution = Execution(precision, channels_last, compile or self.execution.compile)
        return self

    # ---- facts about the model ----------------------------------------------------------------
    @property
    def downsample(self) -> int:
        """f: image pixels per token-grid cell along each side."""
        return self.config.downsample

    @property
    def bits_per_token(self) -> int:
        """C: bits at one latent position (G tokens of b bits)."""
        return self.config.latent_channels

    @property
    def groups(self) -> int:
        """G: tokens per latent position."""
        return self.config.groups

    @property
    def bits_per_group(self) -> int:
        """b: bits per token of one group (codebook of 2**b)."""
        return self.config.bits_per_group

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the token grid for an image of height x width (padded up to multiples of f)."""
        f = self.downsample
        return math.ceil(height / f), math.ceil(width / f)

    def tokens_per_image(self, height: int = 256, width: int = 256) -> int:
        """Group tokens per image: h * w * G."""
        h, w = self.token_grid(height, width)
        return h * w * self.groups

    def bits_per_pixel(self, height: int = 256, width: int = 256) -> float:
        """Token bits per image pixel: h * w * C / (height * width)."""
        h, w = self.token_grid(height, width)
        return h * w * self.bits_per_token / (height * width)

    def compression_ratio(self, height: int = 256, width: int = 256) -> float:
        """24-bit RGB bits over token bits (24 / bits_per_pixel); 48 for imagenet-d8 at 256x256."""
        return 24.0 / self.bits_per_pixel(height, width)

    # ---- the three operations -----------------------------------------------------------------
    def _check_images(self, images: torch.Tensor, *, padded: bool) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise WetokError(f"images must be a torch.Tensor, got {type(images).__name__} (see wetok.images.to_tensor)")
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise WetokError(f"images must have shape (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}")
        if not images.dtype.is_floating_point:
            raise WetokError(f"images must be float in [-1, 1], got {images.dtype} (see wetok.images.to_tensor)")
        h, w = images.shape[-2:]
        f = self.downsample
        if padded and (h % f or w % f):
            raise WetokError(
                f"image size {h}x{w} is not a multiple of the downsample factor {f}; use reconstruct() or pad_to_multiple()"
            )
        return images.to(device=self.device, dtype=self.dtype, memory_format=self.execution.memory_format)

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous latent before quantization: images (B, 3, H, W) -> float (B, C, H/f, W/f) in
        the model's working dtype."""
        return self._run_encoder(self._check_images(images, padded=True))

    def _run_encoder(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(memory_format=self.execution.memory_format)
        with _exact_when_inferring():
            return self.encoder(images)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images float (B, 3, H, W) in [-1, 1], H and W multiples of f -> tokens int64 (B, H/f, W/f, G)."""
        return self.quantizer(self.encode_latent(images)).tokens

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens int (B, h, w, G) -> codes float (B, C, h, w) in {-1, +1}, on the model's device/dtype."""
        if not isinstance(tokens, torch.Tensor):
            raise WetokError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        return self.quantizer.tokens_to_codes(tokens.to(self.device), dtype=self.dtype)

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes float (B, C, h, w) (sign taken) -> tokens int64 (B, h, w, G)."""
        return self.quantizer.codes_to_tokens(codes)

    def make_noise(
        self,
        codes: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor | None:
        """The generative decoder's noise for `codes` (B, C, h, w): `noise` as given (checked); else
        with `seed`, image b's noise from seed + b (`seeded_noise`, the rule of every wetok tool);
        else standard-normal from `generator` (on the generator's device, then moved), or the
        global RNG. None for the plain decoder."""
        if not self.config.generative:
            if noise is not None:
                raise WetokError("this model has a plain decoder: it takes no noise")
            return None
        if noise is None and seed is not None:
            noise = seeded_noise(tuple(codes.shape[1:]), range(seed, seed + codes.shape[0]))
        if noise is not None:
            if tuple(noise.shape) != tuple(codes.shape):
                raise WetokError(f"noise must have the latent's shape {tuple(codes.shape)}, got {tuple(noise.shape)}")
            return noise.to(device=codes.device, dtype=codes.dtype)
        gen_device = generator.device if generator is not None else codes.device
        sample = torch.randn(codes.shape, generator=generator, device=gen_device, dtype=torch.float32)
        return sample.to(device=codes.device, dtype=codes.dtype)

    def decode_codes(
        self,
        codes: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Codes float (B, C, h, w) -> images float (B, 3, h*f, w*f), not clamped (about [-1, 1]):
        float32 when gradients are off (whatever the working precision, so that rounding to 8-bit
        pixels is not done in bfloat16), the working dtype in a training pass."""
        layout = self.execution.memory_format
        codes = codes.to(memory_format=layout)
        noise = self.make_noise(codes, noise=noise, generator=generator, seed=seed)
        with _exact_when_inferring():
            images = self.decoder(codes, None if noise is None else noise.to(memory_format=layout))
        return images if images.requires_grad else images.float()

    @torch.no_grad()
    def decode(
        self,
        tokens: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Tokens int (B, h, w, G) -> images float (B, 3, h*f, w*f) clamped to [-1, 1].

        The generative decoder also takes standard-normal noise of the latent's shape (B, C, h, w):
        pass `noise` to reproduce a decoding exactly, or `seed` (image b gets noise from seed + b,
        as every wetok tool does), or a `generator`; with none, fresh noise from the global RNG.
        The plain decoder is deterministic and takes none of them.
        """
        return self.decode_codes(self.tokens_to_codes(tokens), noise=noise, generator=generator, seed=seed).clamp(-1, 1)

    @torch.no_grad()
    def reconstruct(
        self,
        images: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Encode and decode images of any size: float (B, 3, H, W) in [-1, 1] -> same shape, clamped.

        Images are zero-padded centrally to multiples of f (as the original's original-resolution
        evaluation does), and the output is cropped back. `noise`, if given, has the padded
        latent's shape (B, C, ceil(H/f), ceil(W/f)); `seed` and `generator` as in `decode`.
        """
        images = self._check_images(images, padded=False)
        padded, box = pad_to_multiple(images, self.downsample)
        codes = self.quantizer(self._run_encoder(padded)).quantized
        return crop(self.decode_codes(codes, noise=noise, generator=generator, seed=seed), box).clamp(-1, 1)

    def forward(
        self, images: torch.Tensor, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> TokenizerOutput:
        """Training pass with gradients: images (B, 3, H, W), H and W multiples of f.

        Returns the unclamped reconstruction (B, 3, H, W), the quantizer output (losses in
        training mode) and the continuous latent.
        """
        latent = self.encoder(self._check_images(images, padded=True))
        quantized = self.quantizer(latent)
        recon = self.decode_codes(quantized.quantized, noise=noise, generator=generator)
        return TokenizerOutput(reconstruction=recon, quantizer=quantized, latent=latent)

    # ---- conveniences for PIL images and uint8 arrays -----------------------------------------
    def encode_image(self, image: "Image.Image | np.ndarray") -> torch.Tensor:
        """One PIL image or uint8 array (H, W[, 3]) with H, W multiples of f -> tokens (1, h, w, G)."""
        from .images import to_tensor

        return self.encode(to_tensor(image))

    def reconstruct_image(
        self, image: "Image.Image | np.ndarray", *, generator: torch.Generator | None = None
    ) -> "Image.Image":
        """One PIL image or uint8 array of any size -> its reconstruction as an RGB PIL image."""
        from .images import to_pil, to_tensor

        return to_pil(self.reconstruct(to_tensor(image), generator=generator))[0]

    def decode_to_images(
        self, tokens: torch.Tensor, *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> "list[Image.Image]":
        """Tokens (B, h, w, G) -> B RGB PIL images."""
        from .images import to_pil

        return to_pil(self.decode(tokens, noise=noise, generator=generator))

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` into `directory` (created; files replaced
        atomically). `wetok.load(directory)` reads it back."""
        from .weights import save_tokenizer

        return save_tokenizer(self, directory)
