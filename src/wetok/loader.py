"""`wetok.load`: one entry point for presets, released checkpoints and saved directories."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import (
    CONFIG_FILE,
    Weights,
    check_and_load,
    extract_state_dict,
    infer_config,
    read_saved_config,
    read_saved_weights,
    read_torch_file,
    select_weights,
)
from .config import PRESETS, TokenizerConfig, get_preset
from .errors import CheckpointError, ConfigError
from .hub import hub_weights_path
from .tokenizer import Tokenizer

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"


def default_model_available() -> bool:
    """True when the package carries its trained default model."""
    return (DEFAULT_MODEL_DIR / CONFIG_FILE).is_file()


def resolve_config(config: TokenizerConfig | str | Path | None) -> TokenizerConfig | None:
    """A `TokenizerConfig` from a config object, a preset name, or a released YAML file."""
    if config is None or isinstance(config, TokenizerConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    path = Path(config)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return TokenizerConfig.from_released_yaml(path)
    return get_preset(str(config))  # raises a clear "unknown preset" error


def load(
    source: str | Path | None = None,
    *,
    config: TokenizerConfig | str | Path | None = None,
    weights: Weights = "ema",
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
) -> Tokenizer:
    """Load a WeTok tokenizer, in eval mode.

    Args:
        source: one of
            - None: the default model bundled with the package;
            - a preset name (`wetok.PRESETS`), e.g. "imagenet-d16": the released weights from the
              Hugging Face cache (downloaded when online);
            - a released Lightning `.ckpt` file;
            - a directory written by `Tokenizer.save`.
        config: for a `.ckpt` file: its released YAML file, a preset name or a `TokenizerConfig`.
            Without it the architecture is read off the weights' shapes, with 8 bits per group
            (as in every released model).
        weights: "ema" (default; what the released evaluation and tools use) or "raw" (the
            training weights). Ignored for saved directories, which hold one set.
        device: where to put the model (default CPU).
        trust_pickle: allow files that need arbitrary unpickling. Such files can run code when
            loaded: only for files whose origin you trust.

    Raises:
        CheckpointError / UnsafeCheckpointError / WeightsNotFoundError / ConfigError with a
        one-line message.
    """
    if weights not in ("ema", "raw"):
        raise ConfigError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if source is None:
        if not default_model_available():
            raise CheckpointError(
                "no default model is bundled with this wetok build yet; pass a preset name "
                f"({', '.join(PRESETS)}), a released .ckpt file or a saved model directory"
            )
        source = DEFAULT_MODEL_DIR
    path = Path(source)
    if isinstance(source, str) and source in PRESETS and not path.exists():
        cfg = PRESETS[source]
        model = _load_checkpoint(hub_weights_path(cfg), cfg, weights, trust_pickle)
    elif path.is_dir():
        model = _load_saved(path)
    elif path.is_file():
        model = _load_checkpoint(path, resolve_config(config), weights, trust_pickle)
    else:
        raise CheckpointError(f"{source}: no such file, directory or preset (presets: {', '.join(PRESETS)})")
    return model.to(device or "cpu").eval()


def _load_saved(directory: Path) -> Tokenizer:
    cfg = read_saved_config(directory)
    state = read_saved_weights(directory)
    model = Tokenizer(cfg)
    check_and_load(model, state, state, str(directory))
    return model


def _load_checkpoint(path: Path, config: TokenizerConfig | None, weights: Weights, trust_pickle: bool) -> Tokenizer:
    state = extract_state_dict(read_torch_file(path, trust_pickle=trust_pickle), str(path))
    if config is None:
        try:
            config = infer_config(state)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    model = Tokenizer(config)
    names = list(model.state_dict())
    check_and_load(model, select_weights(state, names, weights, str(path)), state, str(path))
    return model
