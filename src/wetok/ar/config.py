"""The generator's configuration: a frozen dataclass, the released presets (B, L, XL), and the
released config layout (`transformer_config.params` of the original's GenStage YAML files).

Field names are wetok's; `from_released_params` maps the original's keyword names onto them:

    block_size          -> grid_size ** 2 (a square grid of token positions)
    factorized_k        -> groups (G sub-tokens per position)
    factorized_bits     -> bits_per_group (b; every group the same)
    spatial_n_layer     -> spatial_layers, factorized_n_layer -> factorized_layers
    n_head / n_kv_head  -> heads / kv_heads, class_num -> num_classes
    token_drop          -> token_dropout (dropout on the input embeddings)
    resid_dropout_p, ffn_dropout_p, attn_dropout_p, drop_path_rate -> the other dropouts
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..config import TokenizerConfig, _positive_int, _shown, dataclass_from_dict, read_yaml_config
from ..errors import ConfigError

MAX_PARAMETERS = 2**33
"""The largest generator a configuration may describe (XL has 1.5e9): a forged config asking for
more is refused before anything is allocated."""
MAX_BITS = 16
"""At most 2**16 entries per sub-token vocabulary (the released models use 2**8)."""
CLASS_TOKENS = 1
"""Class tokens before the image tokens: one, as in every released model (`cls_token_num`)."""


def _fraction(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{key} must be a number in [0, 1), got {_shown(value)}")
    return float(value)


def _positive_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {_shown(value)}")
    return float(value)


@dataclass(frozen=True)
class TransformerConfig:
    """One class-conditional WeTok generator (the original's `GPT` with token factorization).

    Attributes:
        grid_size: the token grid is grid_size x grid_size positions (16 for 256x256 images and a
            16x-downsampling tokenizer); the original's `block_size` is grid_size ** 2.
        groups: G, sub-tokens per position (the tokenizer's groups).
        bits_per_group: b, bits per sub-token: each sub-token is one of 2 ** b values.
        dim: model width; `heads` must divide it, with head width a multiple of 4 (2D rotary).
        heads: attention heads; kv_heads: key/value heads (None: as many as `heads`).
        spatial_layers: blocks over the positions; factorized_layers: blocks over the G
            sub-tokens of one position.
        num_classes: class labels 0 .. num_classes - 1; label `num_classes` is "unconditional".
        multiple_of, ffn_dim_multiplier: the SwiGLU width, as LlamaGen sizes it.
        norm_eps, rope_base: RMSNorm epsilon and rotary base.
        token_dropout, residual_dropout, ffn_dropout, attention_dropout, drop_path: training-time
            dropouts; class_dropout: the probability that training replaces a label by the
            unconditional one (0.1 in the original, not configurable there).
        init_std: standard deviation of the initial weights (the output heads start at zero).
        name: preset name, when the configuration is a preset.
    """

    grid_size: int = 16
    groups: int = 4
    bits_per_group: int = 8
    dim: int = 1024
    heads: int = 16
    kv_heads: int | None = None
    spatial_layers: int = 24
    factorized_layers: int = 2
    num_classes: int = 1000
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    token_dropout: float = 0.1
    residual_dropout: float = 0.1
    ffn_dropout: float = 0.1
    attention_dropout: float = 0.0
    drop_path: float = 0.0
    class_dropout: float = 0.1
    init_std: float = 0.02
    name: str | None = None

    def __post_init__(self) -> None:
        """Check every field's type and range and the size of the model, so that a forged or
        mistyped configuration is one `ConfigError` naming the field."""
        for key in ("grid_size", "groups", "bits_per_group", "dim", "heads", "spatial_layers", "factorized_layers",
                    "num_classes", "multiple_of"):
            object.__setattr__(self, key, _positive_int(getattr(self, key), key))
        if self.kv_heads is not None:
            object.__setattr__(self, "kv_heads", _positive_int(self.kv_heads, "kv_heads"))
        if self.ffn_dim_multiplier is not None:
            object.__setattr__(self, "ffn_dim_multiplier", _positive_float(self.ffn_dim_multiplier, "ffn_dim_multiplier"))
        for key in ("norm_eps", "rope_base", "init_std"):
            object.__setattr__(self, key, _positive_float(getattr(self, key), key))
        for key in ("token_dropout", "residual_dropout", "ffn_dropout", "attention_dropout", "drop_path", "class_dropout"):
            object.__setattr__(self, key, _fraction(getattr(self, key), key))
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"name must be a string or null, got {_shown(self.name)}")
        if self.bits_per_group > MAX_BITS:
            raise ConfigError(f"bits_per_group must be at most {MAX_BITS}, got {self.bits_per_group}")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise ConfigError(f"dim ({self.dim}) must be heads ({self.heads}) x a multiple of 4 (the 2D rotary embedding)")
        if self.heads % self.key_value_heads:
            raise ConfigError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.grid_size > 1024:
            raise ConfigError(f"grid_size must be at most 1024, got {self.grid_size}")
        if self.groups > self.positions + CLASS_TOKENS:
            raise ConfigError(f"groups ({self.groups}) must not exceed the positions + 1 ({self.positions + 1}): "
                              "the factorized blocks take their rotary angles from the spatial table")
        params = self.parameter_count()
        if params > MAX_PARAMETERS:
            raise ConfigError(f"this configuration describes a generator of {params:.3g} parameters; at most {MAX_PARAMETERS:.3g}")

    # ---- derived quantities -------------------------------------------------------------------
    @property
    def positions(self) -> int:
        """Token positions per image: grid_size ** 2 (the original's `block_size`)."""
        return self.grid_size**2

    @property
    def vocab_size(self) -> int:
        """Values of one sub-token: 2 ** bits_per_group."""
        return 2**self.bits_per_group

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def key_value_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU width: 2/3 of 4 * dim (times `ffn_dim_multiplier`), rounded up to `multiple_of`."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def unconditional_label(self) -> int:
        """The label of the unconditional embedding (guidance's negative branch): num_classes."""
        return self.num_classes

    def parameter_count(self) -> int:
        """The exact number of parameters of `Transformer(self)`, computed without building it."""
        d, hidden = self.dim, self.ffn_hidden
        kv = self.key_value_heads * self.head_dim
        block = d * (d + 2 * kv) + d * d + 3 * d * hidden + 2 * d
        embeddings = self.groups * self.vocab_size * d + (self.num_classes + 1) * d
        heads = self.groups * d * self.vocab_size
        return embeddings + (self.spatial_layers + self.factorized_layers) * block + d + heads

    def describe(self) -> str:
        name = f"{self.name}: " if self.name else ""
        return (f"{name}{self.spatial_layers}+{self.factorized_layers} layers, dim {self.dim}, {self.heads} heads, "
                f"{self.grid_size}x{self.grid_size} positions x {self.groups} sub-tokens of {self.bits_per_group} bits, "
                f"{self.num_classes} classes")

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary; `from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformerConfig:
        """Build from `to_dict()` output; unknown keys or wrong types are one `ConfigError`."""
        return dataclass_from_dict(cls, data, "generator")

    @classmethod
    def from_released_params(cls, params: Mapping[str, Any]) -> TransformerConfig:
        """The original's `GPT(**params)` keyword arguments (`transformer_config.params`, e.g.
        `tiny_ar_expected.pt["gpt_kwargs"]`) as a configuration. Keys the original does not take
        are refused (as `GPT(**params)` would); keys that do not change the network (`vocab_size`,
        `cond_dim`, `embd_pdrop`, `n_unmasked`, `max_batch_size`, `max_seq_len`) are ignored."""
        if not isinstance(params, Mapping):
            raise ConfigError(f"transformer_config.params must be a mapping, got {_shown(params)}")
        unknown = sorted(str(k) for k in params if k not in _RELEASED_KEYS)
        if unknown:
            raise ConfigError(f"transformer_config.params: keys the original GPT does not take: {', '.join(unknown)}")
        for key in ("block_size", "factorized_k", "factorized_bits", "spatial_n_layer", "n_head", "dim"):
            if key not in params:
                raise ConfigError(f"transformer_config.params: missing {key!r}")
        if params.get("token_factorization", False) is not True:
            raise ConfigError("transformer_config.params: token_factorization must be true (the released generators' layout)")
        if params.get("cls_token_num", CLASS_TOKENS) != CLASS_TOKENS:
            raise ConfigError(f"transformer_config.params: cls_token_num must be {CLASS_TOKENS}, got {_shown(params['cls_token_num'])}")
        block = _positive_int(params["block_size"], "transformer_config.params.block_size")
        grid = math.isqrt(block)
        if grid * grid != block:
            raise ConfigError(f"transformer_config.params.block_size must be a square (grid x grid), got {block}")
        groups = _positive_int(params["factorized_k"], "transformer_config.params.factorized_k")
        bits = params["factorized_bits"]
        if not isinstance(bits, (list, tuple)) or len(bits) != groups:
            raise ConfigError(f"transformer_config.params.factorized_bits must list {groups} bit counts, got {_shown(bits)}")
        bits = [_positive_int(b, "transformer_config.params.factorized_bits[]") for b in bits]
        if len(set(bits)) != 1:
            raise ConfigError(f"transformer_config.params.factorized_bits must be equal, got {bits}")
        mapped = {wetok: _yaml_number(params[orig]) for orig, wetok in _RENAMED.items() if orig in params}
        try:
            return cls(grid_size=grid, groups=groups, bits_per_group=bits[0], **mapped)
        except ConfigError as exc:
            raise ConfigError(f"transformer_config.params: {exc}") from None

    def to_released_params(self) -> dict[str, Any]:
        """The original's `GPT` keyword arguments for this configuration (`from_released_params` inverts it)."""
        out: dict[str, Any] = {orig: getattr(self, wetok) for orig, wetok in _RENAMED.items()}
        out.update(block_size=self.positions, factorized_k=self.groups, factorized_bits=[self.bits_per_group] * self.groups,
                   token_factorization=True, vocab_size=2 * self.vocab_size, cond_dim=self.dim, cls_token_num=CLASS_TOKENS)
        out.pop("class_dropout")
        return out


_RENAMED = {
    "spatial_n_layer": "spatial_layers",
    "factorized_n_layer": "factorized_layers",
    "n_head": "heads",
    "n_kv_head": "kv_heads",
    "dim": "dim",
    "class_num": "num_classes",
    "multiple_of": "multiple_of",
    "ffn_dim_multiplier": "ffn_dim_multiplier",
    "norm_eps": "norm_eps",
    "rope_base": "rope_base",
    "token_drop": "token_dropout",
    "resid_dropout_p": "residual_dropout",
    "ffn_dropout_p": "ffn_dropout",
    "attn_dropout_p": "attention_dropout",
    "drop_path_rate": "drop_path",
    "initalizer_range": "init_std",  # sic: the original's spelling
    "class_dropout": "class_dropout",  # not a key of the original; kept out of its params
}
_RELEASED_KEYS = frozenset(_RENAMED) - {"class_dropout"} | {
    "vocab_size", "block_size", "cond_dim", "embd_pdrop", "n_unmasked", "token_factorization", "max_batch_size",
    "max_seq_len", "cls_token_num", "factorized_k", "factorized_bits",
}


def _yaml_number(value: Any) -> Any:
    """A number written as `1e-5` in YAML: PyYAML reads it as a string (YAML 1.1 wants `1.0e-5`),
    the original's OmegaConf as a float; so does wetok. Other values are returned as they are."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _preset(name: str, spatial: int, factorized: int, dim: int, heads: int) -> TransformerConfig:
    return TransformerConfig(grid_size=16, groups=4, bits_per_group=8, dim=dim, heads=heads, spatial_layers=spatial,
                             factorized_layers=factorized, num_classes=1000, name=name)


PRESETS: Mapping[str, TransformerConfig] = MappingProxyType(
    {
        "B": _preset("B", 24, 2, 1024, 16),
        "L": _preset("L", 36, 3, 1280, 20),
        "XL": _preset("XL", 48, 4, 1536, 24),
    }
)
"""The released generator sizes (`imagenet_conditional_llama_{B,L,XL}_GFQ.yaml`): 16 x 16 positions
of 4 sub-tokens of 8 bits (the 16x-downsampling, 32-bit ImageNet tokenizer), 1000 classes."""


def get_preset(name: str) -> TransformerConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown generator preset {name!r}; known presets: {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class ReleasedConfig:
    """What a released generation YAML describes: the generator, and its tokenizer when present."""

    transformer: TransformerConfig
    tokenizer: TokenizerConfig | None


def read_released_yaml(path: str | Path) -> ReleasedConfig:
    """A released GenStage YAML file (`model.init_args.transformer_config.params` and, optionally,
    `first_stage_config.params`). Not YAML, not that layout, or a bad value: one `ConfigError`
    naming the file and the key."""
    path = Path(path)
    doc = read_yaml_config(path)
    try:
        return released_config(doc)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def released_config(doc: Any) -> ReleasedConfig:
    """`read_released_yaml` on an already-parsed document; also accepts the bare
    `transformer_config.params` mapping."""
    if isinstance(doc, Mapping) and "model" not in doc and "block_size" in doc:
        return ReleasedConfig(TransformerConfig.from_released_params(doc), None)
    args = _mapping(_mapping(doc, "model", "the top level"), "init_args", "model")
    section = _mapping(args, "transformer_config", "model.init_args")
    params = _mapping(section, "params", "model.init_args.transformer_config")
    transformer = TransformerConfig.from_released_params(params)
    tokenizer = None
    if "first_stage_config" in args:
        stage = _mapping(_mapping(args, "first_stage_config", "model.init_args"), "params", "model.init_args.first_stage_config")
        try:
            tokenizer = TokenizerConfig.from_released_dict({"model": {"init_args": stage}})
        except ConfigError as exc:
            raise ConfigError(f"first_stage_config.params: {exc}") from None
    return ReleasedConfig(transformer, tokenizer)


def _mapping(doc: Any, key: str, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or not isinstance(doc.get(key), Mapping):
        raise ConfigError(f"not a WeTok generation config ({where}.{key} is missing or not a mapping)")
    return doc[key]
