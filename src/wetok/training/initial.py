"""Starting weights: a released .ckpt, a saved model directory or a wetok training checkpoint;
and the stage-1 -> stage-2 widening of the decoder's input convolution."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import (
    EMA_PREFIX,
    MODEL_PREFIXES,
    check_and_load,
    extract_state_dict,
    read_saved_weights,
    read_torch_file,
    select_weights,
)
from ..errors import CheckpointError
from ..tokenizer import Tokenizer
from .state import is_training_checkpoint

DISCRIMINATOR_PREFIX = "loss.discriminator."


def read_initial_state(
    source: str | Path, names: list[str], weights: str = "ema"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Tokenizer weights (by parameter name, for the `names` wanted) and the discriminator's
    weights when the file has them.

    source: a directory written by `Tokenizer.save`; a released Lightning .ckpt (EMA or raw
    weights, discriminator from `loss.discriminator.*`); or a wetok training checkpoint (its
    EMA or raw model and its discriminator).
    """
    path = Path(source)
    if path.is_dir():
        return read_saved_weights(path), None
    obj = read_torch_file(path)
    if is_training_checkpoint(obj):
        model = obj["ema"]["model"] if weights == "ema" else obj["model"]
        return dict(model), dict(obj["discriminator"])
    state = extract_state_dict(obj, str(path))
    model = select_weights(state, names, weights, str(path))  # type: ignore[arg-type]
    disc = {k[len(DISCRIMINATOR_PREFIX):]: v for k, v in state.items() if k.startswith(DISCRIMINATOR_PREFIX)}
    return model, disc or None


def widen_for_noise(state: dict[str, torch.Tensor], latent_channels: int) -> dict[str, torch.Tensor]:
    """Stage-1 weights -> generative-decoder weights: `decoder.conv_in.weight` (out, C, 3, 3)
    gains C zero input channels for the noise, (out, 2C, 3, 3), so the widened decoder computes
    exactly what the plain one did, whatever the noise. Weights already widened pass unchanged."""
    weight = state["decoder.conv_in.weight"]
    if weight.shape[1] == 2 * latent_channels:
        return state
    if weight.shape[1] != latent_channels:
        raise CheckpointError(f"decoder.conv_in takes {weight.shape[1]} channels, expected {latent_channels}")
    out = dict(state)
    out["decoder.conv_in.weight"] = torch.cat([weight, torch.zeros_like(weight)], dim=1)
    return out


def load_initial_weights(model: Tokenizer, source: str | Path, weights: str = "ema") -> dict[str, torch.Tensor] | None:
    """Load `source` into `model` (widening for a generative decoder); returns the discriminator
    state found in the file, if any. Raises `CheckpointError` naming mismatched keys."""
    names = list(model.state_dict())
    state, disc = read_initial_state(source, names, weights)
    if model.config.generative and "decoder.conv_in.weight" in state:
        state = widen_for_noise(state, model.config.latent_channels)
    file_keys = {k: v for k, v in state.items() if k.startswith(MODEL_PREFIXES) or k.startswith(EMA_PREFIX)}
    check_and_load(model, state, file_keys, str(source))
    return disc
