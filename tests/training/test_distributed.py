"""Two CPU processes under a real torchrun (gloo): stage 1, its resume, then stage 2 from its checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys

import wetok
from support import TINY_CONFIG, make_images, read_metrics
from wetok.training.state import list_checkpoints, read_checkpoint


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "wetok", "train", "--no-progress", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0 and "address already in use" in done.stderr.lower():
        # torchrun picks free ports by probing; another job on a busy machine can take one first
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    return done


def test_two_processes_stage1_then_stage2(tmp_path):
    data = tmp_path / "data"
    make_images(data, 6)
    run1, run2 = tmp_path / "stage1", tmp_path / "stage2"
    done = torchrun("--config", str(TINY_CONFIG), "--data", str(data), "--output", str(run1), "--steps", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) on cpu" in done.stdout and done.stdout.count("finished 3 steps") == 1  # rank 0 speaks
    state = read_checkpoint(run1 / "checkpoints" / "step-00000003.pt")
    assert len(state["rng"]) == 2 and not all(
        (state["rng"][0]["cpu"] == state["rng"][1]["cpu"]).tolist())  # each rank its own stream
    assert [m["step"] for m in read_metrics(run1)] == [1, 2, 3]
    assert wetok.load(run1 / "model").config.latent_channels == 16

    # interrupted after step 2 and resumed: the same losses as the straight run, step for step
    run3 = tmp_path / "resumed"
    common = ["--data", str(data), "--output", str(run3)]
    assert torchrun("--config", str(TINY_CONFIG), *common, "--steps", "2").returncode == 0
    done = torchrun(*common, "--resume", "--steps", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    keys = ("step", "train/total", "train/l1", "train/gan", "train/disc_total")
    assert [[m.get(k) for k in keys] for m in read_metrics(run3)] == [[m.get(k) for k in keys] for m in read_metrics(run1)]

    ckpt = run1 / "checkpoints" / "step-00000003.pt"
    done = torchrun("--config", str(TINY_CONFIG), "--data", str(data), "--output", str(run2), "--steps", "2",
                    "--set", "train.stage=2", "--set", f"init.checkpoint={ckpt}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [s for s, _ in list_checkpoints(run2)] == [2]
    assert wetok.load(run2 / "model").config.generative
