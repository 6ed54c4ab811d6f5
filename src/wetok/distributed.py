"""Devices and torch.distributed set-up for `torchrun` (and a plain single process), shared by
training, evaluation and the command line.

Under torchrun the environment carries RANK, WORLD_SIZE and LOCAL_RANK; the process group uses
nccl on GPUs and gloo on CPU. Without those variables everything runs in one process.

Faults: every collective waits at most the group's timeout for the other processes; a peer that
died (its connections close) or stopped answering (the timeout passes) makes the collective raise
a `RuntimeError` (`torch.distributed.DistError` among them), which `peer_failure` recognises and
`PeerLost` turns into one line. Under torchrun, TORCHELASTIC_RESTART_COUNT says how often the
job was restarted (`restart_count`), so that a restarted worker can resume by itself.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import WetokError

T = TypeVar("T")


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


DEFAULT_TIMEOUT_MINUTES = 10.0
"""How long a training process waits for the others at a collective (`train.timeout_minutes`)."""


class PeerLost(WetokError):
    """Another process of the torchrun job stopped (died, or did not answer within the timeout)."""


def init_distributed(device: str = "auto", *, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> Distributed:
    """Join the torchrun job when there is one, on `resolve_device(device)`; every collective
    then waits at most `timeout_minutes` for the other processes. Failing to join (a peer that
    never arrives) is `PeerLost`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    try:
        join_process_group(dev, timeout=datetime.timedelta(minutes=timeout_minutes))
    except Exception as exc:
        cause = peer_failure(exc)
        if cause is None:
            raise
        raise PeerLost(f"cannot join the other processes ({cause})") from None
    return Distributed(rank=rank, world=world, local_rank=local_rank, device=dev)


def restart_count() -> int:
    """How often torchrun restarted this job (`--max-restarts`): 0 for the first attempt and
    outside torchrun."""
    try:
        return max(0, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0))
    except ValueError:
        return 0


_PEER_FAILURE = re.compile(r"gloo|nccl|connection (reset|closed|refused)|broken pipe|timed out|timeout", re.IGNORECASE)
_SOURCE_PREFIX = re.compile(r"^\[[^\]]*\]\s*")


def peer_failure(exc: BaseException) -> str | None:
    """When `exc` is a collective failing because another process stopped (gloo's and nccl's
    broken connections and timeouts, `torch.distributed.DistError`): the cause in a few words,
    e.g. "Read error [127.0.0.1]:4211: Connection reset by peer"; None for any other error."""
    if isinstance(exc, WetokError):
        return None
    is_dist = isinstance(exc, getattr(dist, "DistError", ())) if dist.is_available() else False
    text = str(exc).strip()
    if not (is_dist or (isinstance(exc, RuntimeError) and _PEER_FAILURE.search(text))):
        return None
    line = _SOURCE_PREFIX.sub("", text.splitlines()[0] if text else type(exc).__name__)
    line = line.split(". ")[0].rstrip(".")
    return line[:160] if line else type(exc).__name__


def join_process_group(device: torch.device, *, timeout: datetime.timedelta | None = None) -> bool:
    """Start the default process group under torchrun (WORLD_SIZE > 1) unless one exists already:
    nccl for a CUDA `device`, gloo otherwise. True when this call started it (and so should leave it).

    `timeout`: how long joining and every later collective wait for the other processes before
    raising (None: torch's default, 30 minutes for gloo, 10 for nccl).

    After a torchrun restart on one node the group meets in a store of its own attempt
    (`_restart_store`): torchrun's shared store still holds the failed attempt's addresses."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    store = _restart_store(timeout)
    if store is None:
        dist.init_process_group(backend, timeout=timeout)
    else:
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                timeout=timeout)
    return True


def _restart_store(timeout: datetime.timedelta | None) -> dist.Store | None:
    """For a restarted single-node torchrun job (TORCHELASTIC_RESTART_COUNT > 0, one agent, its
    TCP store shared with the workers, torchrun's default): the agent's store under a prefix of
    this attempt; None otherwise (torch's own env:// set-up).

    torchrun's workers of every attempt meet in the same shared store, under the same keys, so a
    restarted worker can read the address a worker of the failed attempt published and fail to
    connect ("Connection refused"; pytorch/pytorch#135712). One agent gives all its workers the
    same restart count, which makes it a key prefix they agree on. Several nodes do not (a
    healthy node's agent restarts its workers without counting), so there torch's set-up is kept;
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in torchrun's environment avoids the shared store."""
    attempt = restart_count()
    env = os.environ
    if attempt == 0 or env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or env.get("GROUP_WORLD_SIZE", "1") != "1":
        return None
    try:
        host, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    except (KeyError, ValueError):
        return None
    shared = dist.TCPStore(host, port, int(env["WORLD_SIZE"]), is_master=False,
                           timeout=timeout if timeout is not None else datetime.timedelta(minutes=30))
    return dist.PrefixStore(f"wetok/attempt-{attempt}", shared)


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


def decided_by_main(decide: Callable[[], T], info: Distributed) -> T:
    """`decide()` on process 0, its result given to every process (for a plan the others then
    follow: a file list, the work left to do). A `WetokError` it raises is raised on every process
    with the same message, so that none waits for the others at a collective."""
    outcome: tuple[bool, Any] = (True, None)
    if info.main:
        try:
            outcome = (True, decide())
        except WetokError as exc:
            if not info.enabled:
                raise
            outcome = (False, str(exc))
    ok, value = gather_objects(outcome, info)[0]
    if not ok:
        raise WetokError(value)
    return value


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
