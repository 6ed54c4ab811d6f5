"""Fixtures of the run-machinery tests."""

from __future__ import annotations

import pytest
import torch

from wetok.distributed import Distributed


@pytest.fixture
def one_process() -> Distributed:
    """The place of a process that runs alone (no torchrun) on the CPU."""
    return Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
