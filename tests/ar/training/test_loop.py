"""Generator training in one process: what a run writes, exact resumption after SIGKILL, the
tokenizer check, fine-tuning from a released generator."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wetok
import wetok.ar
from support import TINY_AR_TOKENIZER, class_folder, cli, make_model_dir, read_metrics, require_reference, wait_for
from wetok.ar.training import load_ar_train_config, train_ar
from wetok.errors import WetokError
from wetok.runs.checkpoints import list_checkpoints

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
LOSSES = ("step", "train/loss", "loss/subtoken0", "loss/subtoken1", "accuracy/subtoken0", "train/grad_norm")


def losses(run: Path) -> list[list]:
    return [[m.get(k) for k in LOSSES] for m in read_metrics(run)]


def same_generators(a: Path, b: Path) -> bool:
    x, y = wetok.ar.load(a).transformer_state_dict(), wetok.ar.load(b).transformer_state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def straight(ar_data, tmp_path_factory):
    """An uninterrupted 6-step run (checkpoints at 3 and 6, grids at 3 and 6)."""
    run = tmp_path_factory.mktemp("straight")
    assert train_ar(load_ar_train_config(ar_data["config"]), ar_data["shards"], run, progress=False) == 0
    return run


def test_a_run_writes_checkpoints_logs_grids_and_a_generator_that_samples(straight, tmp_path, capsys):
    assert [s for s, _ in list_checkpoints(straight)] == [3, 6]
    rows = read_metrics(straight)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    first = rows[0]
    assert first["train/loss"] == pytest.approx(first["loss/subtoken0"] + first["loss/subtoken1"], rel=1e-6)
    assert first["train/loss"] == pytest.approx(2 * 2.7726, abs=0.01)  # zero heads at the start: ln 16 per sub-token
    assert first["train/lr"] == pytest.approx(3e-3 / 2)  # warm-up step 1 of 2
    assert first["train/tokens_per_s"] > 0 and 0 <= first["accuracy/subtoken0"] <= 1
    assert sorted(p.name for p in (straight / "samples").iterdir()) == ["step-00000003.png", "step-00000006.png"]
    model = wetok.ar.load(straight / "model")
    assert model.tokenizer is not None and model.config.num_classes == 2 and model.config.grid_size == 4
    assert json.loads((straight / "model" / "config.json").read_text())["tokenizer"] == "included"
    code, _, err = cli(capsys, "sample", "--ckpt", straight / "model", "--per-class", "2", "--output", tmp_path / "s.npz",
                         "--no-progress")
    assert code == 0, err
    import numpy as np

    with np.load(tmp_path / "s.npz") as data:
        assert data["arr_0"].shape == (4, 16, 16, 3) and data["arr_1"].tolist() == [0, 0, 1, 1]


def test_the_loss_falls_when_training_longer(ar_data, tmp_path):
    cfg = load_ar_train_config(ar_data["config"], ["train.steps=40", "train.ckpt_every=40", "sample.every=0", "train.log_every=1"])
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False) == 0
    rows = read_metrics(tmp_path / "run")
    start = sum(r["train/loss"] for r in rows[:5]) / 5
    end = sum(r["train/loss"] for r in rows[-5:]) / 5
    assert end < start - 0.5, (start, end)  # 8 images of 16 positions: a small model learns them quickly


def _train_ar(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wetok", "train-ar", "--no-progress", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_sigkill_then_resume_gives_the_uninterrupted_losses_and_weights(ar_data, tmp_path):
    args = ["--config", ar_data["config"], "--data", ar_data["shards"], "--steps", "80", "--ckpt-every", "5",
            "--set", "sample.every=0", "--set", "train.keep_checkpoints=100"]
    straight = _train_ar(*args, "--output", tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-3000:]

    run = tmp_path / "killed"
    process = _train_ar(*args, "--output", run)
    try:
        wait_for((run / "checkpoints" / "step-00000010.pt").exists, process, "step-10 checkpoint", limit=120, interval=0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (run / "model").exists() and list_checkpoints(run)[-1][0] < 80  # killed mid-run
    resumed = _train_ar("--data", ar_data["shards"], "--output", run, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed at step" in out
    assert losses(run) == losses(tmp_path / "straight")  # every step once, the uninterrupted values exactly
    assert same_generators(run / "model", tmp_path / "straight" / "model")


def test_sigterm_writes_a_checkpoint_and_the_run_resumes(ar_data, tmp_path, monkeypatch):
    from wetok.ar.training import loop

    original = loop._step

    def step_then_term(run, step, stop):
        if step == 1:
            stop.signal = signal.SIGTERM
        return original(run, step, stop)

    monkeypatch.setattr(loop, "_step", step_then_term)
    cfg = load_ar_train_config(ar_data["config"], ["sample.every=0"])
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False) == 128 + signal.SIGTERM
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2]
    monkeypatch.setattr(loop, "_step", original)
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", resume=True, progress=False) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]


def test_a_fresh_run_refuses_a_used_run_dir(straight, ar_data):
    with pytest.raises(WetokError, match="already holds a run's checkpoints: pass --resume"):
        train_ar(load_ar_train_config(ar_data["config"]), ar_data["shards"], straight, progress=False)


def test_gradient_accumulation_and_bf16_autocast_train(ar_data, tmp_path):
    cfg = load_ar_train_config(ar_data["config"], ["optim.grad_accum=2", "train.precision=bf16", "train.steps=2",
                                                   "sample.every=0"])
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False) == 0
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 2 and all(r["train/loss"] > 0 for r in rows)
    assert rows[0]["train/tokens_per_s"] > 0


def test_another_tokenizer_is_refused(ar_data, tmp_path):
    other_weights = make_model_dir(tmp_path / "other", TINY_AR_TOKENIZER, seed=5)
    cfg = load_ar_train_config(ar_data["config"], [f"tokenizer.model={other_weights}"])
    with pytest.raises(WetokError, match="other weights"):
        train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False)
    from wetok import TokenizerConfig

    wider = make_model_dir(tmp_path / "wider", TokenizerConfig(**{**TINY_AR_TOKENIZER.to_dict(), "channels": 64}))
    cfg = load_ar_train_config(ar_data["config"], [f"tokenizer.model={wider}"])
    with pytest.raises(WetokError, match="were made by"):
        train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_same_tokenizer_copied_elsewhere_is_accepted(ar_data, tmp_path):
    copy = tmp_path / "renamed-tokenizer"
    shutil.copytree(ar_data["tokenizer"], copy)
    cfg = load_ar_train_config(ar_data["config"], [f"tokenizer.model={copy}", "train.steps=1", "sample.every=0"])
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False) == 0


def test_fine_tuning_starts_from_the_released_generator(tmp_path):
    from wetok.ar.tokenize import TokenizeSettings, tokenize
    from wetok.distributed import Distributed

    reference = require_reference()
    released = wetok.ar.load(reference / "tiny_ar.ckpt", reference / "tiny_ar.yaml")
    images = class_folder(tmp_path / "images", classes=("a", "b", "c"), per_class=2, size=64)
    info = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    tokenize(released.tokenizer, images, tmp_path / "shards", TokenizeSettings(size=64, augment="none"), info=info, progress=False)
    cfg = load_ar_train_config(None, [f"init.checkpoint={reference / 'tiny_ar.ckpt'}", f"init.config={reference / 'tiny_ar.yaml'}",
                                      "optim.lr=1e-12", "train.steps=1", "train.precision=fp32", "train.device=cpu",
                                      "sample.every=1", "sample.classes=3", "sample.per_class=1", "data.batch_size=2"])
    assert train_ar(cfg, tmp_path / "shards", tmp_path / "run", progress=False) == 0
    tuned = wetok.ar.load(tmp_path / "run" / "model")
    assert tuned.config == released.config and tuned.config.num_classes == 10
    before, after = released.transformer_state_dict(), tuned.transformer_state_dict()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # one step of lr 1e-12: where it started
    assert tuned.tokenizer is not None  # the checkpoint's own tokenizer, included in the export
    assert (tmp_path / "run" / "samples" / "step-00000001.png").is_file()
    # the first step's loss is the released weights' loss on the first batch, with the run's dropout draws
    from wetok.ar.objective import subtoken_losses
    from wetok.ar.shards import open_shards
    from wetok.ar.training.data import TokenBatches

    tokens, labels = TokenBatches(open_shards(tmp_path / "shards"), batch_size=2, views="random", seed=0).batch(0)
    torch.manual_seed(0)  # a fresh run's global RNG on rank 0: train.seed + 1000 x rank
    expected = float(subtoken_losses(released.train()(tokens, labels), tokens).total)
    assert read_metrics(tmp_path / "run")[0]["train/loss"] == pytest.approx(expected, rel=1e-6)


def test_sample_grids_do_not_change_what_the_run_learns(ar_data, straight, tmp_path):
    """Grids at steps 3 and 6 (the straight run) or none: the same losses step for step (sampling
    draws from its own seeded generators, never from the training RNG)."""
    cfg = load_ar_train_config(ar_data["config"], ["sample.every=0"])
    assert train_ar(cfg, ar_data["shards"], tmp_path / "run", progress=False) == 0
    assert losses(tmp_path / "run") == losses(straight)
    assert not (tmp_path / "run" / "samples").exists()
