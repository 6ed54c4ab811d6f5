"""Model configuration: a frozen dataclass, the released presets, and the released YAML layout.

`TokenizerConfig` describes one WeTok architecture. Field names follow the paper's vocabulary
(`latent_channels` C, `groups` G); `from_released_yaml` reads the original Lightning config files
(`model.init_args.ddconfig`, `n_embed`, `embed_dim`, `num_codebooks`, `gan_decoder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ConfigError
from .files import read_regular_file

HUB_REPO = "GrayShine/WeTok"
MAX_PARAMETERS = 2**31
"""The largest model a configuration may describe (the largest preset, general-cr768, has 1.67e9):
a forged config asking for more is refused before anything is allocated."""
MAX_LEVELS = 16
"""At most 16 resolution levels: downsample factor 2**15, the largest a .wtok header stores."""


def dataclass_from_dict(cls: Any, data: Any, what: str) -> Any:
    """`cls(**data)` for a configuration dataclass, with one `ConfigError` for data that is not a
    mapping or holds keys `cls` does not have (`what` names the kind: "tokenizer", "generator")."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a {what} config must be a mapping of keys, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {', '.join(unknown)}")
    return cls(**dict(data))


def _positive_int(value: Any, key: str) -> int:
    """`value` as an int when it is a positive integer (Python or numpy; not a bool, float or
    string); otherwise a `ConfigError` naming `key`."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise ConfigError(f"{key} must be a positive integer, got {_shown(value)}")
    number = operator.index(value)
    if number <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {_shown(number)}")
    return number


def _magnitude(number: int) -> str:
    """A large integer in a few characters: 3.87e+15, or about 2**4096 beyond floats."""
    if number < 10**6:
        return str(number)
    try:
        return f"{float(number):.3g}"
    except OverflowError:
        return f"about 2**{number.bit_length() - 1}"


def _shown(value: Any) -> str:
    """A short repr for error messages (a forged file may hold megabytes in one value)."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python converts to text
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class HubWeights:
    """Where a released checkpoint lives on the Hugging Face Hub."""

    repo_id: str
    filename: str
    revision: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "HubWeights":
        """From a config file's `hub` entry: strings `repo_id`, `filename`, optional `revision`."""
        unknown = sorted(str(k) for k in data if k not in ("repo_id", "filename", "revision"))
        if unknown:
            raise ConfigError(f"hub: unknown keys {', '.join(unknown)}")
        for key in ("repo_id", "filename"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ConfigError(f"hub.{key} must be a non-empty string, got {_shown(data.get(key))}")
        if data.get("revision") is not None and not isinstance(data["revision"], str):
            raise ConfigError(f"hub.revision must be a string or null, got {_shown(data['revision'])}")
        return cls(data["repo_id"], data["filename"], data.get("revision"))


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
        """Check every field's type and range, and the size of the model it describes, so that a
        forged or mistyped configuration is one `ConfigError` naming the field (never a
        `TypeError`/`ValueError`, nor an allocation of terabytes)."""
        ints = ("channels", "num_res_blocks", "latent_channels", "groups", "in_channels", "out_channels", "norm_groups")
        for key in ints:
            object.__setattr__(self, key, _positive_int(getattr(self, key), key))
        mult = self.channel_mult
        if isinstance(mult, (str, bytes, Mapping)) or not hasattr(mult, "__iter__"):
            raise ConfigError(f"channel_mult must be a list of positive integers, got {_shown(mult)}")
        mult = tuple(itertools.islice(iter(mult), MAX_LEVELS + 1))  # a list, tuple, range, array...
        if not 1 <= len(mult) <= MAX_LEVELS:
            raise ConfigError(
                f"channel_mult must hold 1 to {MAX_LEVELS} levels (downsample factor at most 2**{MAX_LEVELS - 1}), got {len(mult)}"
            )
        object.__setattr__(self, "channel_mult", tuple(_positive_int(m, f"channel_mult[{i}]") for i, m in enumerate(mult)))
        if not isinstance(self.generative, bool):
            raise ConfigError(f"generative must be true or false, got {self.generative!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"name must be a string or null, got {self.name!r}")
        if isinstance(self.hub, Mapping):
            object.__setattr__(self, "hub", HubWeights.from_mapping(self.hub))
        elif self.hub is not None and not isinstance(self.hub, HubWeights):
            raise ConfigError(f"hub must be a mapping (repo_id, filename, revision) or null, got {self.hub!r}")
        if self.latent_channels % self.groups:
            raise ConfigError(
                f"latent_channels ({self.latent_channels}) must be divisible by groups ({self.groups})"
            )
        if self.bits_per_group > 24:
            raise ConfigError(
                f"{self.bits_per_group} bits per group means a 2**{self.bits_per_group} codebook per group; at most 24 supported"
            )
        params = self.parameter_count()
        if params > MAX_PARAMETERS:
            raise ConfigError(
                f"this configuration describes a model of {_magnitude(params)} parameters (channels {_magnitude(self.channels)} x "
                f"{_magnitude(max(self.channel_mult))}, {_magnitude(self.num_res_blocks)} res blocks); "
                f"at most 2**31 ({MAX_PARAMETERS:.3g}) supported"
            )
        widths = {"channels": self.channels, **{f"channels*{m}": self.channels * m for m in self.channel_mult}}
        for what, width in widths.items():
            if width % self.norm_groups:
                raise ConfigError(
                    f"channels and channels*channel_mult must be multiples of norm_groups ({self.norm_groups}), got {what} = {width}"
                )

    def parameter_count(self) -> int:
        """The exact number of parameters of `Tokenizer(self)`, computed without building it
        (the encoder, decoder and their GroupNorms; the quantizer has none). `__post_init__`
        refuses configurations above `MAX_PARAMETERS`."""
        ch, mult, n = self.channels, self.channel_mult, self.num_res_blocks
        latent = self.latent_channels

        def res_blocks(width_in: int, width_out: int) -> int:
            """`n` residual blocks, the first from width_in to width_out, the others at width_out."""
            first = 2 * width_in + 9 * width_in * width_out + 2 * width_out + 9 * width_out**2
            first += width_in * width_out if width_in != width_out else 0
            rest = 4 * width_out + 18 * width_out**2
            return first + (n - 1) * rest

        total = 9 * self.in_channels * ch  # encoder conv_in (no bias)
        width = ch
        for level, m in enumerate(mult):
            total += res_blocks(width, ch * m)
            width = ch * m
            if level < len(mult) - 1:
                total += 9 * width**2 + width  # stride-2 downsample conv
        total += res_blocks(width, width) + 2 * width + width * latent + latent  # mid blocks, norm_out, conv_out
        width = ch * mult[-1]
        total += 9 * latent * (2 if self.generative else 1) * width + width  # decoder conv_in
        total += res_blocks(width, width)  # decoder mid blocks
        for level in reversed(range(len(mult))):
            total += 2 * (latent * width + width)  # adaptive GroupNorm's gamma and beta
            total += res_blocks(width, ch * mult[level])
            width = ch * mult[level]
            if level > 0:
                total += 9 * width * 4 * width + 4 * width  # upsampler conv
        return total + 2 * width + 9 * width * self.out_channels + self.out_channels  # norm_out, conv_out

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
        """Build from `to_dict()` output (e.g. a saved model's `config.json`). Unknown keys and
        values of the wrong type (a string for a number, a float for an integer, a list for a
        flag, null) are one `ConfigError` naming the key."""
        return dataclass_from_dict(cls, data, "tokenizer")

    @classmethod
    def from_released_yaml(cls, path: str | Path) -> "TokenizerConfig":
        """Read a released WeTok YAML file (`model.init_args.ddconfig`, `num_codebooks`, ...).
        Not a regular file, over `MAX_CONFIG_BYTES`, not YAML or not that layout: one
        `ConfigError` naming the file (and the key)."""
        path = Path(path)
        doc = read_yaml_config(path)
        try:
            return cls.from_released_dict(doc)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_released_dict(cls, doc: Any) -> "TokenizerConfig":
        """Parse the released config layout already loaded from YAML: `model.init_args` with
        `ddconfig` (`ch`, `ch_mult`, `num_res_blocks`, `z_channels`, optional `in_channels`,
        `out_ch`), `n_embed`, optional `embed_dim`, `num_codebooks`, `gan_decoder`. Integers must
        be integers and `gan_decoder` a boolean; any defect is one `ConfigError` naming the key."""
        args = _section(_section(doc, "model", "the top level"), "init_args", "model")
        dd = _section(args, "ddconfig", "model.init_args")
        where = "model.init_args.ddconfig"
        z_channels = _yaml_int(dd, "z_channels", where)
        latent = _yaml_int(args, "embed_dim", "model.init_args", default=z_channels)
        groups = _yaml_int(args, "num_codebooks", "model.init_args", default=1)
        n_embed = _yaml_int(args, "n_embed", "model.init_args")
        mult = dd.get("ch_mult")
        if not isinstance(mult, (list, tuple)) or not mult:
            raise ConfigError(f"{where}.ch_mult must be a list of positive integers, got {_shown(mult)}")
        generative = args.get("gan_decoder", False)
        if not isinstance(generative, bool):
            raise ConfigError(f"model.init_args.gan_decoder must be true or false, got {_shown(generative)}")
        if z_channels != latent:
            raise ConfigError(f"z_channels ({z_channels}) differs from embed_dim ({latent})")
        if not 1 <= len(mult) <= MAX_LEVELS:
            raise ConfigError(f"{where}.ch_mult must hold 1 to {MAX_LEVELS} levels, got {len(mult)}")
        cfg = cls(
            channels=_yaml_int(dd, "ch", where),
            channel_mult=tuple(_positive_int(m, f"{where}.ch_mult[{i}]") for i, m in enumerate(mult)),
            num_res_blocks=_yaml_int(dd, "num_res_blocks", where),
            latent_channels=latent,
            groups=groups,
            generative=generative,
            in_channels=_yaml_int(dd, "in_channels", where, default=3),
            out_channels=_yaml_int(dd, "out_ch", where, default=3),
        )
        if n_embed != cfg.codebook_size:
            raise ConfigError(
                f"n_embed {n_embed} does not match {latent} channels in {groups} groups (2**{cfg.bits_per_group})"
            )
        return cfg


MAX_CONFIG_BYTES = 1 << 20
"""Config files (released YAML, a saved model's config.json) over 1 MiB are refused unread: the
real ones are a few kilobytes."""


def read_config_text(path: Path, error: type[Exception]) -> str:
    """The text of a small config file: a regular file of at most `MAX_CONFIG_BYTES`, UTF-8
    (`files.read_regular_file`); anything else is a one-line `error` naming the file."""
    blob = read_regular_file(path, "a config file", error, MAX_CONFIG_BYTES, context="cannot read config: ")
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text config file (not UTF-8)") from None


def read_yaml_config(path: Path) -> Any:
    """The parsed document of a small YAML config file (`read_config_text`, `yaml.safe_load`);
    not YAML, or nested absurdly deep: one `ConfigError` naming the file."""
    import yaml

    text = read_config_text(path, ConfigError)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, integers of thousands of digits
        raise ConfigError(f"{path}: not a usable YAML config ({type(exc).__name__})") from None


def _section(doc: Any, key: str, where: str) -> Mapping[str, Any]:
    """`doc[key]` when `doc` is a mapping holding a mapping there; else a `ConfigError`."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"not a WeTok model config ({where} is not a mapping)")
    if key not in doc:
        raise ConfigError(f"not a WeTok model config (missing {key!r} in {where})")
    value = doc[key]
    if not isinstance(value, Mapping):
        raise ConfigError(f"not a WeTok model config ({where}.{key} is not a mapping)" if where != "the top level"
                          else f"not a WeTok model config ({key} is not a mapping)")
    return value


_MISSING = object()


def _yaml_int(section: Mapping[str, Any], key: str, where: str, default: Any = _MISSING) -> int:
    """A positive integer entry of a released YAML section; missing without a default, or of
    another type, is a `ConfigError` naming `where.key`."""
    if key not in section:
        if default is _MISSING:
            raise ConfigError(f"not a WeTok model config (missing {key!r} in {where})")
        return default
    return _positive_int(section[key], f"{where}.{key}")


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
