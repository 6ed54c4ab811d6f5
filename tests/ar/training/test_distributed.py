"""Generator training in two CPU processes under torchrun (gloo): DDP and FSDP (`fully_shard`),
each resumed from a checkpoint to the uninterrupted run's losses and weights; a worker SIGKILLed
under `--max-restarts` resumes by itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wetok.ar
from support import read_metrics, torchrun_workers, wait_for
from wetok.runs.checkpoints import list_checkpoints, read_checkpoint

LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOSSES = ("step", "train/loss", "loss/subtoken0", "loss/subtoken1", "train/grad_norm")
FORMAT = "wetok-ar-train"


def torchrun(*args: str | Path, launch: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [*LAUNCH, *launch, "-m", "wetok", "train-ar", "--no-progress", *map(str, args)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=ENV)
    if done.returncode != 0 and "address already in use" in done.stderr.lower():
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, env=ENV)
    return done


def losses(run: Path) -> list[list]:
    return [[m.get(k) for k in LOSSES] for m in read_metrics(run)]


def same_generators(a: Path, b: Path) -> bool:
    x, y = wetok.ar.load(a).transformer_state_dict(), wetok.ar.load(b).transformer_state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def resumed_copy(straight: Path, run: Path, step: int) -> Path:
    """What a run killed after step `step` + 1 leaves: the step-`step` checkpoint, the config and
    the log lines up to step `step` + 1."""
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(straight / "checkpoints" / f"step-{step:08d}.pt", run / "checkpoints")
    shutil.copy(straight / "config.yaml", run)
    lines = (straight / "metrics.jsonl").read_text().splitlines()[: step + 1]
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


@pytest.fixture(scope="module")
def straight_runs(ar_data, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted 2-process runs of the tiny recipe with 2 micro-batches a step (no EMA), one
    with DDP and one with FSDP: {"ddp": RUN_DIR, "fsdp": RUN_DIR}."""
    runs = {}
    for parallel in ("ddp", "fsdp"):
        run = tmp_path_factory.mktemp(parallel)
        done = torchrun("--config", ar_data["config"], "--data", ar_data["shards"], "--set", f"train.parallel={parallel}",
                        "--set", "optim.ema_decay=null", "--set", "optim.grad_accum=2", "--output", run)
        assert done.returncode == 0, done.stderr[-4000:]
        assert "2 process(es) on cpu" in done.stdout and done.stdout.count("finished 6 steps") == 1  # rank 0 speaks
        runs[parallel] = run
    return runs


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_train_and_resume_exactly(ar_data, straight_runs, tmp_path, parallel):
    straight = straight_runs[parallel]
    state = read_checkpoint(straight / "checkpoints" / "step-00000003.pt", format=FORMAT)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["cpu"], state["rng"][1]["cpu"])
    assert [m["step"] for m in read_metrics(straight)] == [1, 2, 3, 4, 5, 6]
    assert (straight / "samples" / "step-00000006.png").is_file()

    run = resumed_copy(straight, tmp_path / "resumed", 3)
    done = torchrun("--data", ar_data["shards"], "--output", run, "--resume")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "resumed at step 3" in done.stdout
    assert losses(run) == losses(straight)
    assert same_generators(run / "model", straight / "model")


def test_fsdp_learns_what_ddp_learns(straight_runs):
    """The same batches, dropout draws and averaged gradients: the first loss is the same, the
    later ones equal to rounding (sharded reductions add in another order)."""
    ddp, fsdp = read_metrics(straight_runs["ddp"]), read_metrics(straight_runs["fsdp"])
    assert fsdp[0]["train/loss"] == pytest.approx(ddp[0]["train/loss"], rel=1e-6)
    for a, b in zip(ddp[1:], fsdp[1:]):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-4)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-3)


def test_a_sigkilled_worker_restarts_and_ends_with_the_uninterrupted_run(ar_data, tmp_path):
    args = ["--config", ar_data["config"], "--data", ar_data["shards"], "--steps", "60", "--ckpt-every", "5",
            "--set", "sample.every=0", "--set", "train.keep_checkpoints=100"]
    straight = tmp_path / "straight"
    done = torchrun(*args, "--output", straight)
    assert done.returncode == 0, done.stderr[-4000:]
    run = tmp_path / "run"
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        process = subprocess.Popen([*LAUNCH, "--max-restarts=1", "-m", "wetok", "train-ar", "--no-progress", *map(str, args),
                                    "--output", str(run)], stdout=out, stderr=err, env=ENV)
    try:
        wait_for((run / "checkpoints" / "step-00000010.pt").exists, process, "step-10 checkpoint", interval=0.005)
        workers = torchrun_workers(process.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[0], signal.SIGKILL)
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert process.returncode == 0, out[-2000:] + err[-4000:]
    assert "torchrun restart 1" in out or "resumed at step" in out, out[-2000:]
    assert out.count("finished 60 steps") == 1
    assert losses(run) == losses(straight)
    assert same_generators(run / "model", straight / "model")
    assert [s for s, _ in list_checkpoints(run)][-1] == 60
