"""Loading and saving generators: the released Lightning `.ckpt` files and wetok's own directories.

A released generation checkpoint holds `transformer.*` (the generator) and the frozen tokenizer
as `first_stage_model.encoder.*` / `first_stage_model.decoder.*`; its YAML carries
`transformer_config.params` and `first_stage_config.params`. It is read as the tokenizer's
files are: `torch.load(weights_only=True)`, the model built on the meta device and checked key by
key and shape by shape before it takes the file's tensors.

A saved directory holds `config.json` (`{"format": "wetok-ar", "version": 1, "config": ...,
"tokenizer": ...}`), `model.safetensors` (the generator) and, when the tokenizer is included,
`tokenizer/` (a saved tokenizer directory). `"tokenizer"` is `"included"`, null (none paired), or
`{"source": preset name or path}` (a referenced tokenizer: a path relative to the directory, or
absolute, loaded with `wetok.load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError, WetokError
from ..files import require_regular_file
from ..tokenizer import Tokenizer
from ..weights import load as load_tokenizer
from ..weights import (
    load_strict,
    materialised,
    read_model_meta,
    read_saved_weights,
    read_torch_file,
    state_dict_of,
    tokenizer_from_state,
    write_model_files,
)
from .config import PRESETS, ReleasedConfig, TransformerConfig, read_released_yaml, released_config
from .model import Transformer

FORMAT_NAME = "wetok-ar"
FORMAT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
TRANSFORMER_PREFIX = "transformer."
FIRST_STAGE_PREFIX = "first_stage_model."

Params = TransformerConfig | Mapping[str, Any] | str | Path | None


def load(
    path: str | Path,
    params: Params = None,
    *,
    tokenizer: Tokenizer | str | Path | None = None,
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
) -> Transformer:
    """Load a generator, in eval mode, with its paired tokenizer as `model.tokenizer` when known.

    Args:
        path: a released generation `.ckpt` file, or a directory written by `save`.
        params: for a `.ckpt`: its released YAML file (which also describes the tokenizer), the
            `transformer_config.params` mapping, a `TransformerConfig`, or a preset name (B, L,
            XL). Without it the file's shapes must match a preset.
        tokenizer: a tokenizer (or what `wetok.load` takes) to pair instead of the file's own.
        device: where to put the model (default CPU).
        trust_pickle: allow files that need arbitrary unpickling (they can run code).

    Raises:
        CheckpointError / ConfigError / WetokError with a one-line message.
    """
    path = Path(path)
    if path.is_dir():
        if params is not None:
            raise WetokError(f"{path}: a saved generator directory carries its configuration; params must be None")
        model = _load_saved(path)
    elif path.exists():
        require_regular_file(path, "a generator checkpoint", CheckpointError)
        model = _load_checkpoint(path, params, trust_pickle)
    else:
        raise CheckpointError(f"{path}: no such file or directory")
    if tokenizer is not None:
        model.attach_tokenizer(tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer))
    if model.tokenizer is not None:
        check_pairing(model.config, model.tokenizer, str(path))
    return model.to(device or "cpu").eval()


def save(model: Transformer, directory: str | Path, *, tokenizer_source: str | None = None) -> Path:
    """Write `model` into `directory`: `config.json`, `model.safetensors` and, when the model has a
    tokenizer and `tokenizer_source` is None, the tokenizer in `tokenizer/`. With
    `tokenizer_source` (a preset name, or a tokenizer's path, relative to `directory` or
    absolute) the tokenizer is referenced instead of copied. Each file is written atomically."""
    directory = Path(directory)
    entry: Any = None
    if tokenizer_source is not None:
        entry = {"source": str(tokenizer_source)}
    elif model.tokenizer is not None:
        model.tokenizer.save(directory / TOKENIZER_DIR)
        entry = "included"
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": model.config.to_dict(), "tokenizer": entry}
    return write_model_files(directory, model.transformer_state_dict(), meta)


def check_pairing(config: TransformerConfig, tokenizer: Tokenizer, source: str) -> None:
    """A tokenizer fits a generator when its groups and bits per group are the generator's."""
    if tokenizer.groups != config.groups or tokenizer.bits_per_group != config.bits_per_group:
        raise CheckpointError(
            f"{source}: the tokenizer has {tokenizer.groups} groups of {tokenizer.bits_per_group} bits; "
            f"the generator predicts {config.groups} sub-tokens of {config.bits_per_group} bits"
        )


# ---- released checkpoints ------------------------------------------------------------------------
def _load_checkpoint(path: Path, params: Params, trust_pickle: bool) -> Transformer:
    state = state_dict_of(read_torch_file(path, trust_pickle=trust_pickle), str(path))
    own = {k[len(TRANSFORMER_PREFIX):]: v for k, v in state.items() if k.startswith(TRANSFORMER_PREFIX)}
    if not own and "class_emb.embedding_table.weight" in state:  # a bare generator state dict
        own = {k: v for k, v in state.items() if not k.startswith(FIRST_STAGE_PREFIX)}
    if not own:
        raise CheckpointError(f"{path}: no transformer.* weights: not a WeTok generator checkpoint")
    released = _released(params, own, str(path))
    model = _built(released.transformer, own, str(path))
    stage = {k[len(FIRST_STAGE_PREFIX):]: v for k, v in state.items() if k.startswith(FIRST_STAGE_PREFIX)}
    if any(k.startswith(("encoder.", "decoder.")) for k in stage):
        # without a YAML the architecture is read off the shapes, with the generator's bits per sub-token
        model.attach_tokenizer(tokenizer_from_state(stage, released.tokenizer, f"{path} (first_stage_model)", weights="raw",
                                                    bits_per_group=released.transformer.bits_per_group))
    return model


def _released(params: Params, state: Mapping[str, torch.Tensor], source: str) -> ReleasedConfig:
    if isinstance(params, TransformerConfig):
        return ReleasedConfig(params, None)
    if isinstance(params, Mapping):
        return released_config(params)
    if isinstance(params, str) and params in PRESETS:
        return ReleasedConfig(PRESETS[params], None)
    if params is not None:
        return read_released_yaml(params)
    preset = matching_preset(state)
    if preset is None:
        raise CheckpointError(f"{source}: the weights match no generator preset ({', '.join(PRESETS)}); "
                              "pass the released YAML or transformer_config.params (CLI: --config)")
    return ReleasedConfig(preset, None)


def matching_preset(state: Mapping[str, torch.Tensor]) -> TransformerConfig | None:
    """The preset whose parameter names and shapes are exactly the state dict's, if any."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for config in PRESETS.values():
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in Transformer(config).state_dict().items()}
        if expected == shapes:
            return config
    return None


def _built(config: TransformerConfig, state: Mapping[str, torch.Tensor], source: str) -> Transformer:
    """`Transformer(config)` built on the meta device, then given the file's tensors after
    `load_strict` checked every name, shape and dtype."""
    with torch.device("meta"):
        model = Transformer(config)
    load_strict(model, state, source, explain=lambda: f"The generator is {config.describe()}")
    return materialised(model, source)


# ---- saved directories ---------------------------------------------------------------------------
def _load_saved(directory: Path) -> Transformer:
    meta = read_model_meta(directory, FORMAT_NAME, FORMAT_VERSION)
    where = directory / "config.json"
    try:
        config = TransformerConfig.from_dict(meta["config"]) if isinstance(meta["config"], dict) else None
    except ConfigError as exc:
        raise CheckpointError(f"{where}: config: {exc}") from None
    if config is None:
        raise CheckpointError(f"{where}: 'config' must be an object of TransformerConfig fields")
    model = _built(config, read_saved_weights(directory), str(directory))
    entry = meta.get("tokenizer")
    if entry == "included":
        model.attach_tokenizer(load_tokenizer(directory / TOKENIZER_DIR))
    elif isinstance(entry, dict) and isinstance(entry.get("source"), str) and set(entry) == {"source"}:
        source = entry["source"]
        target = Path(source) if Path(source).is_absolute() else directory / source
        model.attach_tokenizer(load_tokenizer(target if target.exists() else source))
    elif entry is not None:
        raise CheckpointError(f"{where}: 'tokenizer' must be \"included\", null or {{\"source\": ...}}")
    return model
