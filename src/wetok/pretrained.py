"""Finding and loading the third-party pretrained networks that metrics and losses use.

These files cannot be downloaded by wetok: they are looked up at an explicit path, else in torch
hub's standard cache (`$TORCH_HOME/hub/checkpoints/`, default `~/.cache/torch/hub/checkpoints/`),
where `torchvision` and `torch.hub` put them. A missing file raises `WeightsNotFoundError` with
one line naming the file and where to put it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoint import read_torch_file
from .errors import CheckpointError, WeightsNotFoundError


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint folder: `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(filename: str, explicit: str | Path | None, *, what: str, option: str) -> Path:
    """The path of a pretrained weight file.

    Args:
        filename: the standard file name (e.g. `vgg16-397923af.pth`), looked up in the hub cache.
        explicit: a path given by the user (a file, or a folder holding `filename`); wins when set.
        what: a few words saying what the file is, for the error message.
        option: how to pass an explicit path (e.g. "backbone_weights=... / --weights-dir").

    Raises:
        WeightsNotFoundError: neither the explicit path nor the cache holds the file.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / filename
        if path.is_file():
            return path
        raise WeightsNotFoundError(f"{what}: {path} not found; give the path of {filename} ({option})")
    path = hub_checkpoint_dir() / filename
    if path.is_file():
        return path
    raise WeightsNotFoundError(
        f"{what}: {filename} not found; put it in {hub_checkpoint_dir()}/ (torch hub cache, $TORCH_HOME) or pass its path ({option})"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `name -> tensor` mapping in a torch weight file, read safely on the CPU
    (`weights_only=True`; errors are one-line `CheckpointError`s)."""
    obj = read_torch_file(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def load_exactly(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module`, requiring every parameter/buffer of the module with its shape
    (extra entries in `state` are the caller's to drop; BatchNorm's `num_batches_tracked` counters
    may be absent). Raises one-line `CheckpointError`."""
    expected = module.state_dict()
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    missing = [k for k in expected if k not in state]
    misshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or misshaped:
        names = (missing + misshaped)[:3]
        raise CheckpointError(
            f"{source}: does not fit {type(module).__name__} ({len(missing)} missing, {len(misshaped)} mis-shaped: "
            f"{', '.join(names)})"
        )
    module.load_state_dict({k: state[k] for k in expected}, strict=True)
