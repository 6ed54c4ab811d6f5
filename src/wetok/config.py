"""Model configuration: a frozen dataclass, the released presets, and the released YAML layout.

`TokenizerConfig` describes one WeTok architecture. Field names follow the paper's vocabulary
(`latent_channels` C, `groups` G); `from_released_yaml` reads the original Lightning config files
(`model.init_args.ddconfig`, `n_embed`, `embed_dim`, `num_codebooks`, `gan_decoder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ConfigError

HUB_REPO = "GrayShine/WeTok"


@dataclass(frozen=True)
class HubWeights:
    """Where a released checkpoint lives on the Hugging Face Hub."""

    repo_id: str
    filename: str
    revision: str | None = None


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made a set of tokens: what token files record and decoding checks.

    Attributes:
        architecture: `TokenizerConfig.architecture_hash()` (16 hex digits); decoding checks it.
        preset: the preset name (`wetok.PRESETS`) when the weights are a released preset's.
        weights_file: the weights file's name (a `.ckpt`, or a saved model directory's name).
        weights: "ema", "raw" or "saved" (a `Tokenizer.save` directory holds one set).
        ckpt, config: the checkpoint path and the config (YAML path or preset name) as the user
            gave them to `wetok.load`; the original tool's JSON token files record them. They do
            not take part in comparisons (the same model named by another path is the same model).
    """

    architecture: str
    preset: str | None = None
    weights_file: str | None = None
    weights: str = "ema"
    ckpt: str | None = dataclasses.field(default=None, compare=False)
    config: str | None = dataclasses.field(default=None, compare=False)

    def describe(self) -> str:
        name = self.preset or self.weights_file or "an unnamed model"
        return f"{name} (architecture {self.architecture})"


@dataclass(frozen=True)
class TokenizerConfig:
    """One WeTok architecture.

    Attributes:
        channels: base width `ch` of the encoder/decoder (every level's width a multiple of
            `norm_groups`).
        channel_mult: width multiplier per resolution level; `len(channel_mult) - 1` stride-2 steps,
            so the downsample factor is `2 ** (len(channel_mult) - 1)`.
        num_res_blocks: residual blocks per level (and in the bottleneck).
        latent_channels: C, channels of the latent = bits per spatial position.
        groups: G, quantizer groups; each token carries `latent_channels // groups` bits.
        generative: True for the generative decoder (GD), which also takes Gaussian noise.
        in_channels / out_channels: image channels (3).
        norm_groups: groups of every GroupNorm: 32 in all released models. At small widths 32
            groups hold one channel each (per-channel instance normalisation, which erases each
            channel's mean and scale per image); fewer groups keep more of that. It changes no
            weight shape, but it is part of the architecture (and of its hash when not 32).
        name: preset name, when the configuration is a released preset.
        hub: where the released weights live, when known.
    """

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    latent_channels: int = 32
    groups: int = 4
    generative: bool = False
    in_channels: int = 3
    out_channels: int = 3
    norm_groups: int = 32
    name: str | None = None
    hub: HubWeights | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        if isinstance(self.hub, Mapping):
            object.__setattr__(self, "hub", HubWeights(**self.hub))
        positive = {
            "channels": self.channels,
            "num_res_blocks": self.num_res_blocks,
            "latent_channels": self.latent_channels,
            "groups": self.groups,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "norm_groups": self.norm_groups,
        }
        for key, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if not self.channel_mult or any(m <= 0 for m in self.channel_mult):
            raise ConfigError(f"channel_mult must be non-empty positive integers, got {self.channel_mult}")
        for m in self.channel_mult:
            if (self.channels * m) % self.norm_groups:
                raise ConfigError(
                    f"channels*channel_mult must be multiples of norm_groups ({self.norm_groups}), got {self.channels}*{m}"
                )
        if self.latent_channels % self.groups:
            raise ConfigError(
                f"latent_channels ({self.latent_channels}) must be divisible by groups ({self.groups})"
            )
        if self.bits_per_group > 24:
            raise ConfigError(
                f"{self.bits_per_group} bits per group means a 2**{self.bits_per_group} codebook per group; at most 24 supported"
            )

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def downsample(self) -> int:
        """Spatial downsample factor f: an image of H x W gives a (H/f) x (W/f) token grid."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def bits_per_group(self) -> int:
        """b = C / G: bits per token; each group has a codebook of 2**b codes."""
        return self.latent_channels // self.groups

    @property
    def codebook_size(self) -> int:
        """2**b, the number of distinct tokens of one group (`n_embed` in the released YAML)."""
        return 2**self.bits_per_group

    def compression_ratio(self, height: int = 256, width: int = 256) -> float:
        """Raw 24-bit RGB bits over token bits for an image of the given size (multiples of f)."""
        f = self.downsample
        token_bits = math.ceil(height / f) * math.ceil(width / f) * self.latent_channels
        return height * width * 3 * 8 / token_bits

    def architecture(self) -> dict[str, Any]:
        """The fields that decide what the weights compute (no name or hub location).

        `norm_groups` appears only when it is not the released 32, so the released architectures
        keep their hashes."""
        fields = {
            "channels": self.channels,
            "channel_mult": list(self.channel_mult),
            "num_res_blocks": self.num_res_blocks,
            "latent_channels": self.latent_channels,
            "groups": self.groups,
            "generative": self.generative,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
        }
        if self.norm_groups != 32:
            fields["norm_groups"] = self.norm_groups
        return fields

    def architecture_hash(self) -> str:
        """A short, stable hex digest of `architecture()` that identifies compatible weights."""
        blob = json.dumps(self.architecture(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        """One line: `d16, ch 256 x (1,1,2,2,4), 4 res blocks, 32 bits = 4 groups x 8 bits, plain decoder`."""
        mult = ",".join(str(m) for m in self.channel_mult)
        decoder = "generative decoder" if self.generative else "plain decoder"
        norms = f", GroupNorm {self.norm_groups} groups" if self.norm_groups != 32 else ""
        return (
            f"d{self.downsample}, ch {self.channels} x ({mult}), {self.num_res_blocks} res blocks, "
            f"{self.latent_channels} bits = {self.groups} groups x {self.bits_per_group} bits, {decoder}{norms}"
        )

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; `from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["channel_mult"] = list(self.channel_mult)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TokenizerConfig":
        """Build from `to_dict()` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown tokenizer config keys: {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"invalid tokenizer config: {exc}") from None

    @classmethod
    def from_released_yaml(cls, path: str | Path) -> "TokenizerConfig":
        """Read a released WeTok YAML file (`model.init_args.ddconfig`, `num_codebooks`, ...)."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        try:
            return cls.from_released_dict(doc)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_released_dict(cls, doc: Any) -> "TokenizerConfig":
        """Parse the released config layout already loaded from YAML."""
        try:
            args = doc["model"]["init_args"]
            dd = args["ddconfig"]
            latent = int(args.get("embed_dim", dd["z_channels"]))
            groups = int(args.get("num_codebooks", 1))
            n_embed = int(args["n_embed"])
            cfg = cls(
                channels=int(dd["ch"]),
                channel_mult=tuple(int(m) for m in dd["ch_mult"]),
                num_res_blocks=int(dd["num_res_blocks"]),
                latent_channels=latent,
                groups=groups,
                generative=bool(args.get("gan_decoder", False)),
                in_channels=int(dd.get("in_channels", 3)),
                out_channels=int(dd.get("out_ch", 3)),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a WeTok model config (missing {exc})") from None
        except ValueError as exc:
            raise ConfigError(f"not a WeTok model config ({exc})") from None
        if int(dd["z_channels"]) != latent:
            raise ConfigError(f"z_channels ({dd['z_channels']}) differs from embed_dim ({latent})")
        if n_embed != cfg.codebook_size:
            raise ConfigError(
                f"n_embed {n_embed} does not match {latent} channels in {groups} groups (2**{cfg.bits_per_group})"
            )
        return cfg


def _preset(name: str, filename: str, *, mult: tuple[int, ...], latent: int, groups: int, gd: bool = False) -> TokenizerConfig:
    return TokenizerConfig(
        channels=256,
        channel_mult=mult,
        num_res_blocks=4,
        latent_channels=latent,
        groups=groups,
        generative=gd,
        name=name,
        hub=HubWeights(HUB_REPO, filename),
    )


PRESETS: Mapping[str, TokenizerConfig] = MappingProxyType(
    {
        "imagenet-d8": _preset("imagenet-d8", "ImageNet/downsample8/WeTok.ckpt", mult=(1, 2, 2, 4), latent=32, groups=4),
        "imagenet-d16": _preset("imagenet-d16", "ImageNet/downsample16/WeTok.ckpt", mult=(1, 1, 2, 2, 4), latent=32, groups=4),
        "general-cr24": _preset("general-cr24", "GeneralDomain/compratio24/WeTok.ckpt", mult=(1, 2, 2, 4), latent=64, groups=8),
        "general-cr48": _preset("general-cr48", "GeneralDomain/compratio48/WeTok.ckpt", mult=(1, 2, 2, 4), latent=32, groups=4),
        "general-cr192": _preset("general-cr192", "GeneralDomain/compratio192/WeTok.ckpt", mult=(1, 1, 2, 2, 4), latent=32, groups=4),
        "general-cr768": _preset(
            "general-cr768", "GeneralDomain/compratio768/WeTok.ckpt", mult=(1, 1, 2, 2, 4, 8), latent=32, groups=4, gd=True
        ),
    }
)
"""The released WeTok models by name: ImageNet (d8, d16) and general-domain (compression 24 to 768)."""


def get_preset(name: str) -> TokenizerConfig:
    """The preset called `name`; a clear error listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
