"""Starting weights: a released .ckpt, a saved model directory or a wetok training checkpoint;
the stage-1 -> stage-2 widening of the decoder's input convolution; and the deepening of a
model by residual blocks that start as identities."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..runs.checkpoints import is_training_checkpoint
from ..tokenizer import Tokenizer
from ..weights import (
    EMA_PREFIX,
    MODEL_PREFIXES,
    extract_state_dict,
    load_tokenizer_weights,
    read_saved_weights,
    read_torch_file,
    select_weights,
)

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


_BLOCK_KEY = re.compile(r"^((?:encoder|decoder)\.(?:mid_block|(?:down|up)\.\d+\.block))\.(\d+)\.(.+)$")


def deepen(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights of a model with fewer residual blocks per level -> weights of the deeper model
    whose freshly initialised state is `fresh`.

    Every list of residual blocks (`encoder.down.{i}.block`, `encoder.mid_block`,
    `decoder.mid_block`, `decoder.up.{i}.block`) keeps the file's blocks first; the blocks after
    them take their fresh weights except `conv2`, which is zero, so each adds nothing to its
    shortcut (an identity, as the appended blocks keep the width) and the deeper model computes
    exactly what the file's did. Training then grows them from there. Raises `CheckpointError`
    when keys other than appended blocks' are missing; a file with more blocks than the model is
    refused by the strict load that follows (its extra keys are unexpected).
    """
    have: dict[str, int] = {}
    for key in state:
        match = _BLOCK_KEY.match(key)
        if match:
            have[match[1]] = max(have.get(match[1], 0), int(match[2]) + 1)
    out = dict(state)
    for key, value in fresh.items():
        if key in state:
            continue
        match = _BLOCK_KEY.match(key)
        if match is None or int(match[2]) < have.get(match[1], 0):
            raise CheckpointError(f"init.deepen: {key} is missing from the checkpoint and is not part of an appended residual block")
        if match[3].startswith("nin_shortcut"):
            raise CheckpointError(f"init.deepen: appended block {match[1]}.{match[2]} changes the width; it cannot start as an identity")
        out[key] = torch.zeros_like(value) if match[3] == "conv2.weight" else value.clone()
    return out


def load_initial_weights(
    model: Tokenizer, source: str | Path, weights: str = "ema", *, deepened: bool = False
) -> dict[str, torch.Tensor] | None:
    """Load `source` into `model` (widening for a generative decoder; with `deepened`, residual
    blocks the file lacks start as identities, see `deepen`); returns the discriminator state
    found in the file, if any. Raises `CheckpointError` naming mismatched keys."""
    own = model.state_dict()
    state, disc = read_initial_state(source, list(own), weights)
    if model.config.generative and "decoder.conv_in.weight" in state:
        state = widen_for_noise(state, model.config.latent_channels)
    if deepened:
        state = deepen(state, own)
    file_keys = {k: v for k, v in state.items() if k.startswith(MODEL_PREFIXES) or k.startswith(EMA_PREFIX)}
    load_tokenizer_weights(model, state, file_keys, str(source))
    return disc
