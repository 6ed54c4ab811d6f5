"""Exponential moving average of a model's weights (used for evaluation and export)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` whose floating-point parameters track it.

    After each optimizer step `update(model)` sets ema = d * ema + (1 - d) * weights with
    d = min(decay, (1 + n) / (10 + n)), n the number of updates so far (a warm-up so that short
    runs are not dominated by the initial weights). Buffers are copied. `state_dict` holds the
    averaged model's state and the update count.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        current = dict(model.named_parameters())
        for name, param in self.model.named_parameters():
            param.lerp_(current[name].detach(), 1.0 - d)
        buffers = dict(model.named_buffers())
        for name, buffer in self.model.named_buffers():
            buffer.copy_(buffers[name])

    def state_dict(self) -> dict[str, object]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[arg-type]
