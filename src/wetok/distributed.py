"""Devices and torch.distributed set-up for `torchrun` (and a plain single process), shared by
training, evaluation and the command line.

Under torchrun the environment carries RANK, WORLD_SIZE and LOCAL_RANK; the process group uses
nccl on GPUs and gloo on CPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import WetokError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on the process that writes checkpoints, logs and exports (rank 0)."""
        return self.rank == 0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device of this process. "auto" (or None): CUDA when available, else the CPU; "cuda"
    without an index means cuda:LOCAL_RANK under torchrun (cuda:0 otherwise), and becomes the
    current CUDA device. A CUDA device on a machine without one is a one-line `WetokError`."""
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise WetokError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise WetokError(f"device {device}: no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> Distributed:
    """Join the torchrun job when there is one, on `resolve_device(device)`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    join_process_group(dev)
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=dev)


def join_process_group(device: torch.device) -> bool:
    """Start the default process group under torchrun (WORLD_SIZE > 1) unless one exists already:
    nccl for a CUDA `device`, gloo otherwise. True when this call started it (and so should leave it)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def all_reduce_max(values: list[float], info: Distributed) -> list[float]:
    """Element-wise maximum of `values` over all processes (the values themselves in one process)."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def all_reduce_mean(values: dict[str, float], info: Distributed) -> dict[str, float]:
    """Mean of each value over all processes."""
    if not info.enabled or not values:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / info.world).tolist()))


def gather_objects(obj: object, info: Distributed) -> list[object]:
    """`obj` from every process, by rank."""
    if not info.enabled:
        return [obj]
    out: list[object] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def leave_process_group(*, synchronize: bool) -> None:
    """Destroy the default process group; with `synchronize`, first wait for every process.

    Pass `synchronize=True` after a normal end: tearing gloo/nccl down under a peer that is still
    finishing a collective aborts that peer ("terminate called without an active exception").
    After an error pass False: a peer may never arrive at the barrier.
    """
    if synchronize:
        dist.barrier()
    dist.destroy_process_group()


def shutdown(info: Distributed, *, synchronize: bool = True) -> None:
    """Leave the process group of a training job (see `leave_process_group`)."""
    if info.enabled and dist.is_initialized():
        leave_process_group(synchronize=synchronize)
