"""The training loop in one process: both stages, resume equivalence (stage 1 and 2, also after a
torchrun restart), stage-2 start equivalence, fine-tuning from a released checkpoint, NaN
handling, SIGTERM, a full disk or `ulimit -f` while writing checkpoints and the model, export,
and the channels_last memory layout (losses within rounding, checkpoints either way)."""

from __future__ import annotations

import dataclasses
import errno
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

import wetok
from support import TINY_CONFIG, read_metrics
from wetok.distributed import Distributed
from wetok.errors import WetokError
from wetok.runs.checkpoints import list_checkpoints, read_checkpoint
from wetok.runs.signals import TrainingDiverged
from wetok.training import loop
from wetok.training.config import load_train_config
from wetok.training.initial import deepen, load_initial_weights, widen_for_noise


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, data):
    """A finished 4-step stage-1 run (GAN from step 2), shared by several tests."""
    run = tmp_path_factory.mktemp("stage1")
    assert loop.train(load_train_config(TINY_CONFIG), data, run, progress=False) == 0
    return run


def test_stage1_run_writes_everything(stage1_run):
    assert [s for s, _ in list_checkpoints(stage1_run)] == [2, 4]
    metrics = read_metrics(stage1_run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert "train/disc_hinge" not in metrics[1] and "train/disc_hinge" in metrics[2]  # gan_start: 2
    for m in metrics:
        assert m["train/total"] > 0 and m["train/l1"] > 0
        assert m["train/total"] == pytest.approx(
            m["train/l1"] + 0.1 * m["train/entropy"] + 0.25 * m["train/commitment"] + 0.1 * m.get("train/gan", 0.0), rel=1e-5)
        assert 0 < m["usage/group0"] <= 1
    assert (stage1_run / "samples" / "step-00000002.png").is_file()
    assert list((stage1_run / "logs").glob("events.out.tfevents.*"))
    model = wetok.load(stage1_run / "model")
    state = read_checkpoint(stage1_run / "checkpoints" / "step-00000004.pt")
    for name, value in model.state_dict().items():
        assert torch.equal(value, state["ema"]["model"][name])
    assert state["step"] == 4 and state["config"]["train"]["steps"] == 4
    assert set(state) >= {"model", "ema", "discriminator", "lecam", "optimizer", "disc_optimizer", "scaler", "rng"}


def test_resume_reproduces_losses_step_for_step(stage1_run, data, tmp_path):
    cfg = load_train_config(TINY_CONFIG, ["train.steps=2"])
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    with pytest.raises(WetokError, match="already holds a run's checkpoints"):
        loop.train(cfg, data, tmp_path, progress=False)
    # what a run killed after step 3, past its step-2 checkpoint, leaves: lines the resumed run rewrites
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "train/total": 99.0}\n{"step": 4, "train/tot')
    (tmp_path / "eval.jsonl").write_text('{"step": 2, "psnr": 10.0}\n{"step": 3, "psnr": 11.0}\n')
    assert loop.train(load_train_config(TINY_CONFIG), data, tmp_path, resume=True, progress=False) == 0
    straight, resumed = read_metrics(stage1_run), read_metrics(tmp_path)
    assert [m["step"] for m in resumed] == [m["step"] for m in straight] == [1, 2, 3, 4]
    keys = ["train/total", "train/l1", "train/entropy", "train/commitment", "train/gan", "train/disc_total", "train/lecam"]
    for a, b in zip(straight, resumed):
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}
    assert (tmp_path / "eval.jsonl").read_text() == '{"step": 2, "psnr": 10.0}\n'
    assert not list(tmp_path.glob(".*.tmp"))
    assert_same_state(stage1_run / "checkpoints" / "step-00000004.pt", tmp_path / "checkpoints" / "step-00000004.pt")


def logged(run_dir):
    """metrics.jsonl without the throughput (a matter of time, not of the run)."""
    return [{k: v for k, v in m.items() if k != "train/images_per_s"} for m in read_metrics(run_dir)]


def assert_same_state(a, b):
    """Two training checkpoints hold identical model, EMA and discriminator weights."""
    final_a, final_b = read_checkpoint(a), read_checkpoint(b)
    for part in ("model", "discriminator"):
        for name, value in final_a[part].items():
            assert torch.equal(value, final_b[part][name]), (part, name)
    for name, value in final_a["ema"]["model"].items():
        assert torch.equal(value, final_b["ema"]["model"][name]), ("ema", name)


def test_stage2_resume_reproduces_the_uninterrupted_run(stage1_run, data, tmp_path):
    """Every source of randomness of stage 2 (data order, random scale and crop, flips, decoder
    noise per micro-batch, a loader worker, the new discriminator) resumes exactly, whatever the
    global RNG holds when the resumed run starts."""
    ckpt = stage1_run / "checkpoints" / "step-00000004.pt"
    cfg = load_train_config(TINY_CONFIG, [
        "train.stage=2", f"init.checkpoint={ckpt}", "train.ckpt_every=1", "data.random_scale=[1.0, 1.5]",
        "optim.grad_accum=2", "data.workers=1", "loss.gan_start=1"])
    assert loop.train(cfg, data, tmp_path / "straight", progress=False) == 0
    assert loop.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=1)), data, tmp_path / "resumed",
                      progress=False) == 0
    torch.manual_seed(12345)  # the resumed run must not depend on the global RNG it finds
    assert loop.train(cfg, data, tmp_path / "resumed", resume=True, progress=False) == 0
    resumed = logged(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4] and "train/disc_total" in resumed[1]
    assert resumed == logged(tmp_path / "straight")
    assert_same_state(tmp_path / "straight" / "checkpoints" / "step-00000004.pt",
                      tmp_path / "resumed" / "checkpoints" / "step-00000004.pt")


def test_a_torchrun_restart_resumes_by_itself(stage1_run, data, tmp_path, monkeypatch):
    """TORCHELASTIC_RESTART_COUNT > 0: the latest checkpoint when there is one (no --resume), else
    a fresh start over what the failed attempt left (its log lines dropped)."""
    cfg = load_train_config(TINY_CONFIG)
    assert loop.train(load_train_config(TINY_CONFIG, ["train.steps=2"]), data, tmp_path / "run", progress=False) == 0
    with (tmp_path / "run" / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "train/total": 99.0}\n')
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert loop.train(cfg, data, tmp_path / "run", progress=False) == 0
    assert logged(tmp_path / "run") == logged(stage1_run)
    assert_same_state(stage1_run / "checkpoints" / "step-00000004.pt", tmp_path / "run" / "checkpoints" / "step-00000004.pt")

    (tmp_path / "fresh").mkdir()  # the first attempt died before its first checkpoint
    (tmp_path / "fresh" / "metrics.jsonl").write_text('{"step": 1, "train/total": 99.0}\n')
    assert loop.train(load_train_config(TINY_CONFIG, ["train.steps=1"]), data, tmp_path / "fresh", progress=False) == 0
    assert [m["train/total"] for m in read_metrics(tmp_path / "fresh")] == [read_metrics(stage1_run)[0]["train/total"]]


def test_widening_keeps_the_stage1_output():
    torch.manual_seed(0)
    plain = wetok.Tokenizer(load_train_config(TINY_CONFIG).tokenizer_config()).eval()
    generative = wetok.Tokenizer(load_train_config(TINY_CONFIG, ["train.stage=2", "init.checkpoint=x"]).tokenizer_config()).eval()
    generative.load_state_dict(widen_for_noise(plain.state_dict(), 16))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn(2, 16, 8, 8) * 3
    assert torch.equal(plain.reconstruct(images), generative.reconstruct(images, noise=noise))


def test_stage2_starts_where_stage1_ended_and_trains_the_decoder_only(stage1_run, data, tmp_path):
    ckpt = stage1_run / "checkpoints" / "step-00000004.pt"
    cfg = load_train_config(TINY_CONFIG, ["train.stage=2", f"init.checkpoint={ckpt}", "train.steps=2", "loss.gan_start=0"])
    parts, notes = loop.build_parts(cfg, torch.device("cpu"))
    assert parts.model.config.generative and any("stage 2" in n for n in notes)
    stage1 = wetok.load(stage1_run / "model")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    start = parts.model.eval().reconstruct(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(start, stage1.reconstruct(images))
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    metrics = read_metrics(tmp_path)
    assert "train/entropy" not in metrics[0] and "train/gan" in metrics[0]
    assert metrics[0]["train/total"] == pytest.approx(metrics[0]["train/l1"] + 0.1 * metrics[0]["train/gan"], rel=1e-5)
    after = read_checkpoint(tmp_path / "checkpoints" / "step-00000002.pt")["model"]
    before = read_checkpoint(ckpt)["ema"]["model"]
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("encoder."))
    assert not torch.equal(after["decoder.conv_out.weight"], before["decoder.conv_out.weight"])
    assert wetok.load(tmp_path / "model").config.generative


def test_deepened_model_starts_where_the_checkpoint_ended_and_grows(stage1_run, data, tmp_path):
    ckpt = stage1_run / "checkpoints" / "step-00000004.pt"
    cfg = load_train_config(TINY_CONFIG, ["model.num_res_blocks=3", f"init.checkpoint={ckpt}", "init.deepen=true",
                                          "train.steps=2", "loss.gan_start=0"])
    parts, notes = loop.build_parts(cfg, torch.device("cpu"))
    assert any("residual blocks it lacks starting as identities" in n for n in notes)
    state = parts.model.state_dict()
    assert state["encoder.down.0.block.2.conv2.weight"].abs().sum() == 0
    assert state["decoder.up.1.block.1.conv1.weight"].abs().sum() > 0  # fresh, not zero: it learns once conv2 moves
    shallow = wetok.load(stage1_run / "model")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(parts.model.eval().reconstruct(images), shallow.reconstruct(images))
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    after = read_checkpoint(tmp_path / "checkpoints" / "step-00000002.pt")["model"]
    assert after["decoder.mid_block.2.conv2.weight"].abs().sum() > 0
    deep = wetok.load(tmp_path / "model")
    assert deep.config.num_res_blocks == 3

    # a resumed run reads its own checkpoint only: the starting file may be gone by then
    moved = ckpt.with_name("moved.pt")
    ckpt.rename(moved)
    try:
        resumed = load_train_config(tmp_path / "config.yaml", ["train.steps=3"])
        assert loop.train(resumed, data, tmp_path, resume=True, progress=False) == 0
    finally:
        moved.rename(ckpt)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]

    # without init.deepen the missing blocks are an error naming them; a file deeper than the model too
    with pytest.raises(WetokError, match=r"missing \(encoder\.down\.0\.block\.1\."):
        loop.build_parts(load_train_config(TINY_CONFIG, ["model.num_res_blocks=2", f"init.checkpoint={ckpt}"]), torch.device("cpu"))
    deep_ckpt = tmp_path / "checkpoints" / "step-00000002.pt"
    with pytest.raises(WetokError, match=r"unexpected \(encoder\.down\.0\.block\.1\."):
        loop.build_parts(load_train_config(TINY_CONFIG, [f"init.checkpoint={deep_ckpt}", "init.deepen=true"]), torch.device("cpu"))


def test_deepen_refuses_keys_that_are_not_appended_blocks():
    torch.manual_seed(0)
    shallow = wetok.Tokenizer(load_train_config(TINY_CONFIG).tokenizer_config()).state_dict()
    fresh = wetok.Tokenizer(load_train_config(TINY_CONFIG, ["model.num_res_blocks=2"]).tokenizer_config()).state_dict()
    deepened = deepen(shallow, fresh)
    assert set(deepened) == set(fresh) and torch.equal(deepened["encoder.conv_in.weight"], shallow["encoder.conv_in.weight"])
    del shallow["encoder.conv_in.weight"]
    with pytest.raises(WetokError, match="encoder.conv_in.weight is missing from the checkpoint and is not part of an appended"):
        deepen(shallow, fresh)


def test_fine_tune_from_released_checkpoint_takes_its_discriminator(reference):
    cfg = load_train_config(None, [
        "model.channels=32", "model.channel_mult=[1,2,2,2]", "model.num_res_blocks=1", "model.latent_channels=64",
        "model.groups=8", f"init.checkpoint={reference / 'tiny_d8_g8.ckpt'}", "loss.perceptual_weight=0",
    ])
    parts, notes = loop.build_parts(cfg, torch.device("cpu"))
    released = wetok.load(reference / "tiny_d8_g8.ckpt", config=reference / "tiny_d8_g8.yaml")
    assert all(torch.equal(v, released.state_dict()[k]) for k, v in parts.model.state_dict().items())
    raw = torch.load(reference / "tiny_d8_g8.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(parts.discriminator.main[0].weight, raw["loss.discriminator.main.0.weight"])
    assert "discriminator from the same checkpoint" in notes
    wrong = wetok.Tokenizer(load_train_config(TINY_CONFIG).tokenizer_config())
    with pytest.raises(WetokError, match="weights do not fit the model"):
        load_initial_weights(wrong, reference / "tiny_d8_g8.ckpt")


def test_nan_loss_stops_naming_step_and_term(data, tmp_path, monkeypatch):
    real = loop.generator_terms
    calls = []

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls.append(1)
        if len(calls) >= 3:  # from the third step on
            terms.parts["l1"] = torch.tensor(float("nan"))
        return terms

    monkeypatch.setattr(loop, "generator_terms", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3: loss term l1 is not finite"):
        loop.train(load_train_config(TINY_CONFIG), data, tmp_path, progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]  # the last good checkpoint stays
    assert not (tmp_path / "model").exists()


def test_sigterm_writes_a_checkpoint_and_stops(data, tmp_path, monkeypatch):
    real = loop.generator_terms
    calls = []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "generator_terms", interrupt)
    status = loop.train(load_train_config(TINY_CONFIG, ["train.ckpt_every=100"]), data, tmp_path, progress=False)
    assert status == 128 + signal.SIGTERM
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert loop.export_latest(tmp_path).joinpath("model.safetensors").is_file()


def test_perceptual_term_with_random_lpips_weights(data, tmp_path, monkeypatch):
    import functools

    import wetok.metrics.lpips

    cfg = load_train_config(TINY_CONFIG, ["loss.perceptual_weight=1", "loss.perceptual_net=alex", "train.steps=1"])
    with pytest.raises(wetok.WeightsNotFoundError, match="loss.perceptual_weight: 0"):
        loop.build_perceptual(cfg, torch.device("cpu"))
    monkeypatch.setattr(wetok.metrics.lpips, "LPIPS", functools.partial(wetok.metrics.lpips.LPIPS, pretrained=False))
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    m = read_metrics(tmp_path)[0]
    assert m["train/perceptual"] > 0
    assert m["train/total"] == pytest.approx(
        m["train/l1"] + m["train/perceptual"] + 0.1 * m["train/entropy"] + 0.25 * m["train/commitment"], rel=1e-5)


def test_squared_error_term(data, tmp_path):
    cfg = load_train_config(TINY_CONFIG, ["loss.l2_weight=2.5", "loss.l1_weight=0.5", "train.steps=1"])
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    m = read_metrics(tmp_path)[0]
    assert 0 < m["train/l2"] < 4 * m["train/l1"]  # |error| <= 2 in [-1, 1]
    assert m["train/total"] == pytest.approx(
        0.5 * m["train/l1"] + 2.5 * m["train/l2"] + 0.1 * m["train/entropy"] + 0.25 * m["train/commitment"], rel=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_and_accumulation(stage1_run, data, tmp_path, precision):
    cfg = load_train_config(TINY_CONFIG, [f"train.precision={precision}", "train.steps=1"])
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    mixed, full = read_metrics(tmp_path)[0], read_metrics(stage1_run)[0]
    assert mixed["train/l1"] == pytest.approx(full["train/l1"], rel=0.05)  # same batch, same init
    assert mixed["train/entropy"] == pytest.approx(full["train/entropy"], rel=0.01)
    accumulated = load_train_config(TINY_CONFIG, ["optim.grad_accum=2", "data.batch_size=1", "train.steps=1"])
    assert loop.train(accumulated, data, tmp_path / "accum", progress=False) == 0
    assert read_metrics(tmp_path / "accum")[0]["train/l1"] > 0


def test_heldout_evaluation_of_the_ema_weights(data, tmp_path):
    import json

    from wetok.images import to_uint8
    from wetok.metrics import psnr, ssim
    from wetok.training.data import evaluation_images

    cfg = load_train_config(TINY_CONFIG, [f"eval.folder={data}", "eval.size=32", "eval.every=3"])
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    rows = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 4]
    images = evaluation_images(data, 32, 64)
    recon = wetok.load(tmp_path / "model").reconstruct(images)
    assert rows[-1]["psnr"] == pytest.approx(psnr(to_uint8(images), to_uint8(recon)).mean().item(), rel=1e-9)
    assert rows[-1]["ssim"] == pytest.approx(ssim(to_uint8(images), to_uint8(recon)).mean().item(), rel=1e-9)
    assert (tmp_path / "samples" / "step-00000004.png").is_file()


def test_adaptive_gan_weight_option(data, tmp_path):
    cfg = load_train_config(TINY_CONFIG, ["loss.adaptive_gan_weight=true", "loss.gan_start=0", "train.steps=2"])
    assert loop.train(cfg, data, tmp_path, progress=False) == 0
    m = read_metrics(tmp_path)[0]
    assert 0 < m["train/gan_adaptive_weight"] <= 1e4
    stage1 = m["train/l1"] + 0.1 * m["train/entropy"] + 0.25 * m["train/commitment"]
    assert m["train/total"] == pytest.approx(stage1 + 0.1 * m["train/gan_adaptive_weight"] * m["train/gan"], rel=1e-5)


def test_a_full_disk_while_exporting_the_model_is_one_error(stage1_run, tmp_path, monkeypatch):
    import pathlib

    model = wetok.load(stage1_run / "model")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    with pytest.raises(WetokError) as caught:
        model.save(tmp_path / "model")
    assert str(caught.value) == f"{tmp_path / 'model' / 'model.safetensors'}: cannot write the model: No space left on device"
    assert list((tmp_path / "model").iterdir()) == []


def test_file_size_limit_while_training_is_one_line_and_the_run_resumes(stage1_run, data, tmp_path):
    """`ulimit -f` below a checkpoint's size: the checkpoint write fails with EFBIG (Python ignores
    SIGXFSZ), the run stops with one line naming the checkpoint, the older checkpoint stays (also
    with keep_checkpoints 1), no temporary file is left, and the run resumes from it exactly."""
    run = tmp_path / "run"
    assert loop.train(load_train_config(TINY_CONFIG, ["train.steps=2", "train.keep_checkpoints=1"]), data, run, progress=False) == 0
    limit = 4 * 2**20  # above the logs, the grids and the model (2.3 MB), below a checkpoint (10 MB)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "wetok", "train", "--no-progress", "--data", str(data), "--output", str(run), "--resume", "--steps", "4"],
        check=False, capture_output=True, text=True, timeout=300, preexec_fn=small_files, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines() == [f"wetok: error: {run / 'checkpoints' / 'step-00000004.pt'}: cannot write checkpoint: File too large"]
    assert [s for s, _ in list_checkpoints(run)] == [2] and not list(run.rglob("*.tmp"))
    assert loop.train(load_train_config(TINY_CONFIG), data, run, resume=True, progress=False) == 0
    assert logged(run) == logged(stage1_run)
    assert_same_state(stage1_run / "checkpoints" / "step-00000004.pt", run / "checkpoints" / "step-00000004.pt")


# ---- memory layout (train.channels_last) ----------------------------------------------------------
CPU = Distributed(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


def is_nhwc(tensor):
    """A 4-D tensor in channels_last layout (and not also contiguous, as 1 x 1 spatial ones are)."""
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def test_channels_last_puts_the_networks_in_nhwc_and_leaves_the_ema_contiguous(monkeypatch):
    import functools

    import wetok.metrics.lpips

    monkeypatch.setattr(wetok.metrics.lpips, "LPIPS", functools.partial(wetok.metrics.lpips.LPIPS, pretrained=False))
    for layout in (True, False):
        overrides = [f"train.channels_last={layout}", "loss.perceptual_weight=1", "loss.perceptual_net=alex"]
        cfg = load_train_config(TINY_CONFIG, overrides)
        parts, _ = loop.build_parts(cfg, CPU.device)
        perceptual = loop.build_perceptual(cfg, CPU.device)
        for net in (parts.model, parts.discriminator, perceptual):
            kernels = [p for p in net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
            assert kernels and all(is_nhwc(p) == layout for p in kernels), type(net).__name__
        assert all(p.is_contiguous() for p in parts.ema.model.parameters())


def within_rounding(step):
    """The relative tolerance on a loss term of the tiny recipe at logged step `step` between two
    float32 runs whose convolutions round differently: 1e-3 for steps 1-3, 2e-2 from step 4 on.
    Measured (AMD EPYC (Zen 3), AVX2) between channels_last and contiguous: total loss 4e-6
    relative at step 1, 1e-4 at step 3, 6e-3 at step 4, where the GAN's first update and the
    quantizer's signs amplify it (two contiguous runs on 1 and 2 threads differ by 2e-3 there)."""
    return 1e-3 if step <= 3 else 2e-2


@pytest.fixture(scope="module")
def nhwc_run(tmp_path_factory, data):
    """The shared 4-step stage-1 run (`stage1_run`, fp32, so contiguous by default) with
    `train.channels_last: true`."""
    run = tmp_path_factory.mktemp("nhwc")
    assert loop.train(load_train_config(TINY_CONFIG, ["train.channels_last=true"]), data, run, progress=False) == 0
    return run


def test_channels_last_losses_match_contiguous_within_rounding(stage1_run, nhwc_run):
    """The same 4 steps (GAN from step 2) in both layouts. Step 1 (same weights, same batch)
    differs by convolution rounding alone; later steps carry the difference on through the
    updates (`within_rounding`)."""
    assert not load_train_config(TINY_CONFIG).train.nhwc
    nchw, nhwc = read_metrics(stage1_run), read_metrics(nhwc_run)
    assert [m["step"] for m in nhwc] == [1, 2, 3, 4]
    assert nchw[0]["train/total"] != nhwc[0]["train/total"]  # different kernels did run
    assert nhwc[0]["train/l1"] == pytest.approx(nchw[0]["train/l1"], rel=1e-6)
    assert nhwc[0]["train/total"] == pytest.approx(nchw[0]["train/total"], rel=5e-5)
    for a, b in zip(nchw, nhwc):
        for key in ("train/total", "train/l1", "train/entropy", "train/commitment", "train/gan", "train/disc_total"):
            assert (key in a) == (key in b), (a["step"], key)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=within_rounding(a["step"])), (a["step"], key)


@pytest.mark.parametrize("first, then", [(True, True), (True, False), (False, True)])
def test_a_checkpoint_is_contiguous_and_resumes_under_either_layout(stage1_run, nhwc_run, data, tmp_path, first, then):
    """A run's checkpoint holds contiguous tensors only, whatever its layout, and loads into a
    plain model. Written with channels_last `first`, resumed with `then`: the optimizer state
    takes its parameters' layout; the resumed run reproduces the uninterrupted one exactly in the
    same layout, and within rounding in the other."""
    state = read_checkpoint((nhwc_run if first else stage1_run) / "checkpoints" / "step-00000002.pt")
    tensors = [*state["model"].values(), *state["ema"]["model"].values(), *state["discriminator"].values()]
    tensors += [t for s in (state["optimizer"], state["disc_optimizer"]) for per in s["state"].values() for t in per.values()]
    assert sum(t.dim() == 4 and t.shape[-1] > 1 for t in tensors) > 20 and all(t.is_contiguous() for t in tensors)
    plain = wetok.Tokenizer(load_train_config(TINY_CONFIG).tokenizer_config())
    plain.load_state_dict(state["model"])
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in state["model"].items())

    cfg = load_train_config(TINY_CONFIG, [f"train.channels_last={then}"])
    parts, _ = loop.build_parts(cfg, CPU.device)
    loop.restore(parts, state, CPU, rng=False)
    moments = [(p, parts.optimizer.state[p]["exp_avg"]) for p in parts.optimizer.state]
    assert moments and all(m.stride() == p.stride() for p, m in moments)
    assert any(is_nhwc(m) for _, m in moments) == then
    payload = loop.checkpoint_payload(cfg, parts, CPU)  # contiguous copies; the live state keeps its layout
    assert all(t.is_contiguous() for t in payload["model"].values())
    assert all(m.stride() == p.stride() for p, m in moments)

    assert loop.train(load_train_config(TINY_CONFIG, ["train.steps=2", f"train.channels_last={first}"]), data, tmp_path,
                      progress=False) == 0
    assert loop.train(cfg, data, tmp_path, resume=True, progress=False) == 0
    straight, resumed = logged(nhwc_run if then else stage1_run), logged(tmp_path)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    if first == then:
        assert resumed == straight
        assert_same_state((nhwc_run if then else stage1_run) / "checkpoints" / "step-00000004.pt",
                          tmp_path / "checkpoints" / "step-00000004.pt")
    for a, b in zip(straight, resumed):
        assert b["train/total"] == pytest.approx(a["train/total"], rel=within_rounding(a["step"])), a["step"]
    assert wetok.load(tmp_path / "model").state_dict().keys() == plain.state_dict().keys()
