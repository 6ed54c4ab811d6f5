"""A training job's process: the resume modes, a torchrun restart, leaving the process group,
and another process's failure as one line (the real two-process cases: tests/training/test_distributed.py)."""

from __future__ import annotations

import pytest
import torch

from wetok.distributed import Distributed, PeerLost
from wetok.errors import WetokError
from wetok.runs import job
from wetok.runs.job import run_job

GLOO_RESET = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:9613: Connection reset by peer")


def test_one_process_runs_the_body_with_the_resume_it_asked_for(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    seen = []
    assert run_job("cpu", 1.0, True, lambda info, mode: seen.append((info.world, info.device.type, mode)) or 7) == 7
    assert seen == [(1, "cpu", True)]
    with pytest.raises(WetokError, match="resume must be False, True or 'auto', got 'yes'"):
        run_job("cpu", 1.0, "yes", lambda info, mode: 0)


@pytest.mark.parametrize("resume, mode", [(False, "auto"), (True, True), ("auto", "auto")])
def test_a_torchrun_restart_resumes_by_itself(monkeypatch, resume, mode):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert run_job("cpu", 1.0, resume, lambda info, got: 0 if got == mode else 1) == 0


@pytest.fixture
def two_processes(monkeypatch):
    """Rank 0 of a two-process job, without a process group: what `shutdown` was asked is recorded."""
    left = []
    monkeypatch.setattr(job, "init_distributed", lambda device, timeout_minutes: Distributed(
        rank=0, world=2, local_rank=0, device=torch.device("cpu")))
    monkeypatch.setattr(job, "shutdown", lambda info, synchronize: left.append(synchronize))
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    return left


def test_a_stopped_peer_is_one_line_and_other_errors_pass(two_processes):
    assert run_job("cpu", 1.0, False, lambda info, mode: 0) == 0
    assert two_processes == [True]  # a normal end waits for every process

    def peer_died(info, mode):
        raise GLOO_RESET

    with pytest.raises(PeerLost) as caught:
        run_job("cpu", 1.0, False, peer_died)
    assert str(caught.value) == "another process stopped (Read error [127.0.0.1]:9613: Connection reset by peer); the last checkpoint is kept"
    assert two_processes == [True, False]  # after an error, without waiting

    def own_error(info, mode):
        raise WetokError("data.size 30 is not a multiple of the downsample factor 4")

    with pytest.raises(WetokError, match="^data.size 30 is not a multiple"):
        run_job("cpu", 1.0, False, own_error)
    assert two_processes == [True, False, False]
