"""Two CPU processes under a real torchrun (gloo): stage 1, its resume, stage 2 from its checkpoint;
a worker SIGKILLed under `--max-restarts` (the restarted job resumes by itself and ends with the
uninterrupted run's weights); a hung worker (SIGSTOP) ends the other within the timeout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import wetok
from support import TINY_CONFIG, read_metrics, torchrun_workers, wait_for
from wetok.runs.checkpoints import list_checkpoints, read_checkpoint

LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOSSES = ("step", "train/total", "train/l1", "train/gan", "train/disc_total", "train/lecam")


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [*LAUNCH, "-m", "wetok", "train", "--no-progress", *args]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=ENV)
    if done.returncode != 0 and "address already in use" in done.stderr.lower():
        # torchrun picks free ports by probing; another job on a busy machine can take one first
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=ENV)
    return done


def same_weights(a: Path, b: Path) -> bool:
    """Whether two saved model directories hold identical tensors."""
    x, y = wetok.load(a).state_dict(), wetok.load(b).state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def losses(run: Path) -> list[list]:
    return [[m.get(k) for k in LOSSES] for m in read_metrics(run)]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, data):
    """An uninterrupted 2-process stage-1 run of 4 steps (checkpoints at 2 and 4) and its output."""
    run = tmp_path_factory.mktemp("stage1")
    done = torchrun("--config", str(TINY_CONFIG), "--data", str(data), "--output", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    return run, done


STAGE2 = ["--steps", "10", "--set", "train.stage=2", "--set", "train.timeout_minutes=1"]


@pytest.fixture(scope="module")
def stage2(tmp_path_factory, data, stage1):
    """An uninterrupted 2-process stage-2 run of 10 steps from the stage-1 run's last checkpoint."""
    run = tmp_path_factory.mktemp("stage2")
    ckpt = stage1[0] / "checkpoints" / "step-00000004.pt"
    args = ["--config", str(TINY_CONFIG), "--data", str(data), *STAGE2, "--set", f"init.checkpoint={ckpt}"]
    done = torchrun(*args, "--output", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    return run, args


def test_two_processes_stage1_and_its_resume(stage1, data, tmp_path):
    run1, done = stage1
    assert "2 process(es) on cpu" in done.stdout and done.stdout.count("finished 4 steps") == 1  # rank 0 speaks
    state = read_checkpoint(run1 / "checkpoints" / "step-00000004.pt")
    assert len(state["rng"]) == 2 and not all(
        (state["rng"][0]["cpu"] == state["rng"][1]["cpu"]).tolist())  # each rank its own stream
    assert [m["step"] for m in read_metrics(run1)] == [1, 2, 3, 4]
    assert wetok.load(run1 / "model").config.latent_channels == 16

    # what the run would have left when killed during step 3 (its step-2 checkpoint, the log lines
    # up to step 3), resumed: the same losses as the straight run, step for step, and the same weights
    run3 = tmp_path / "resumed"
    (run3 / "checkpoints").mkdir(parents=True)
    shutil.copy(run1 / "checkpoints" / "step-00000002.pt", run3 / "checkpoints")
    shutil.copy(run1 / "config.yaml", run3)
    (run3 / "metrics.jsonl").write_text("".join(line + "\n" for line in (run1 / "metrics.jsonl").read_text().splitlines()[:3]))
    done = torchrun("--data", str(data), "--output", str(run3), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed at step 2" in done.stdout
    assert losses(run3) == losses(run1)
    assert same_weights(run3 / "model", run1 / "model")


def test_two_processes_stage2(stage2):
    run, _ = stage2
    assert [s for s, _ in list_checkpoints(run)] == [6, 8, 10]
    assert wetok.load(run / "model").config.generative
    assert "train/entropy" not in read_metrics(run)[0]


def _launch(args: list[str], run: Path, log: Path, *launch: str) -> subprocess.Popen:
    with (log / "out").open("w") as out, (log / "err").open("w") as err:
        return subprocess.Popen([*LAUNCH, *launch, "-m", "wetok", "train", "--no-progress", *args, "--output", str(run)],
                                stdout=out, stderr=err, env=ENV)


def test_killed_worker_restarts_and_ends_with_the_uninterrupted_weights(stage2, tmp_path):
    """SIGKILL of rank 0 (the one that writes checkpoints) after the first checkpoint; rank 1 ends
    with its line, torchrun restarts both, they resume from the last checkpoint by themselves."""
    straight, args = stage2
    run = tmp_path / "run"
    process = _launch(args, run, tmp_path, "--max-restarts=1")
    try:
        first = run / "checkpoints" / "step-00000002.pt"
        wait_for(first.is_file, process, "first checkpoint")
        workers = torchrun_workers(process.pid)
        assert sorted(workers) == [0, 1], workers
        assert not (run / "checkpoints" / "step-00000010.pt").exists()  # killed mid-run
        os.kill(workers[0], signal.SIGKILL)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert process.returncode == 0, out[-2000:] + err[-6000:]
    assert "wetok train: another process stopped (" in err and "the last checkpoint is kept" in err  # the survivor's line
    assert "torchrun restart 1: resumed at step" in out
    assert out.count("finished 10 steps") == 1
    assert losses(run) == losses(straight)  # every step logged once, with the uninterrupted run's values
    assert same_weights(run / "model", straight / "model")
    assert not [p for p in run.rglob("*.tmp")]


def test_hung_worker_ends_the_other_within_the_timeout(data, tmp_path):
    run = tmp_path / "run"
    timeout_s = 9
    args = ["--config", str(TINY_CONFIG), "--data", str(data), "--steps", "40", "--set", f"train.timeout_minutes={timeout_s / 60}"]
    process = _launch(args, run, tmp_path)
    stopped = None
    try:
        wait_for((run / "checkpoints" / "step-00000002.pt").is_file, process, "first checkpoint")
        stopped = torchrun_workers(process.pid)[1]
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        wait_for(lambda: "another process stopped" in (tmp_path / "err").read_text(), process, "line from rank 0",
                 limit=timeout_s + 60)
        assert time.monotonic() - start < timeout_s + 30
        os.kill(stopped, signal.SIGCONT)  # so that torchrun's SIGTERM reaches it now, not after its own grace period
        process.wait(timeout=120)
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if process.poll() is None:
            process.kill()
    err = (tmp_path / "err").read_text()
    assert process.returncode != 0
    line = next(line for line in err.splitlines() if "another process stopped" in line)
    assert line.startswith("wetok train: another process stopped (") and "timed out" in line.lower(), line
    assert list_checkpoints(run) and not (run / "model").exists()
    assert not [p for p in run.rglob("*.tmp")]


@pytest.mark.parametrize(
    "error, cause",
    [
        (RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:9613: "
                      "Connection reset by peer. This is typically caused by a remote worker hanging. GLHF!"),
         "Read error [127.0.0.1]:9613: Connection reset by peer"),
        (RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 9000ms for recv operation to complete"),
         "Timed out waiting 9000ms for recv operation to complete"),
        (RuntimeError("NCCL communicator was aborted on rank 1"), "NCCL communicator was aborted on rank 1"),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"), None),
        (ValueError("connection reset"), None),
    ],
)
def test_peer_failures_are_recognised(error, cause):
    from wetok.distributed import peer_failure

    assert peer_failure(error) == cause


def test_a_restarted_single_node_job_meets_in_a_store_of_its_own_attempt(monkeypatch):
    """torchrun's shared store keeps the failed attempt's addresses: a restart on one node joins under
    its attempt's prefix; the first attempt, several nodes, or a store of the job's own keep torch's set-up."""
    from wetok import distributed

    made = []
    monkeypatch.setattr(distributed.dist, "TCPStore", lambda *args, **kwargs: made.append((args, kwargs)) or "shared")
    monkeypatch.setattr(distributed.dist, "PrefixStore", lambda prefix, store: (prefix, store))
    env = {"TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_USE_AGENT_STORE": "True", "GROUP_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400", "WORLD_SIZE": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed._restart_store(None) == ("wetok/attempt-2", "shared")
    assert made[0][0] == ("127.0.0.1", 29400, 2) and made[0][1]["is_master"] is False
    for key, value in [("GROUP_WORLD_SIZE", "2"), ("TORCHELASTIC_USE_AGENT_STORE", "False"), ("TORCHELASTIC_RESTART_COUNT", "0")]:
        monkeypatch.setenv(key, value)
        assert distributed._restart_store(None) is None
