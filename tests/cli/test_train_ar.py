"""`wetok train-ar` and `wetok sample --demo` on the command line: a run, a resume, an export, and
one-line errors with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support import cli, make_ar_data, read_metrics


@pytest.fixture(scope="module")
def ar_data(tmp_path_factory):
    return make_ar_data(tmp_path_factory.mktemp("ar-data"))


def test_train_ar_resume_and_export(ar_data, tmp_path, capsys):
    common = ["--data", ar_data["shards"], "--output", tmp_path / "run", "--set", "sample.every=0"]
    code, out, err = cli(capsys, "train-ar", "--no-progress", "--config", ar_data["config"], *common, "--steps", "2")
    assert code == 0, err
    assert "finished 2 steps" in out and "EMA weights exported to" in out
    code, out, _ = cli(capsys, "train-ar", "--no-progress", *common, "--resume", "--steps", "3")
    assert code == 0 and "resumed at step 2" in out
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [1, 2, 3]
    code, _, err = cli(capsys, "train-ar", "--config", ar_data["config"], *common, "--resume", "--set", "optim.lr=1")
    assert code == 2 and "differs from the run's" in err
    (tmp_path / "run" / "model" / "config.json").unlink()
    code, out, _ = cli(capsys, "train-ar", "--output", tmp_path / "run", "--export")
    assert code == 0 and "exported to" in out
    code, _, err = cli(capsys, "sample", "--ckpt", tmp_path / "run" / "model", "--per-class", "1", "--output", tmp_path / "s",
                       "--no-progress")
    assert code == 0, err
    assert (tmp_path / "s" / "grid.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "missing.yaml", "--data", ".", "--output", "o"], "missing.yaml: cannot read config"),
        (["--config", "CONFIG", "--data", "SHARDS", "--output", "o", "--set", "optim.lrr=3"], "unknown key(s) in section 'optim': lrr"),
        (["--config", "CONFIG", "--data", "no/such/dir", "--output", "o"], "no/such/dir: no such folder of token shards"),
        (["--config", "CONFIG", "--data", "IMAGES", "--output", "o"], "manifest.json"),
        (["--data", "SHARDS", "--output", "o"], "--config is required"),
        (["--config", "CONFIG", "--output", "o"], "--data is required"),
        (["--output", "nowhere", "--export"], "no generator training checkpoint to export"),
    ],
)
def test_errors_are_one_line_with_status_2(ar_data, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    names = {"CONFIG": ar_data["config"], "SHARDS": ar_data["shards"], "IMAGES": ar_data["images"]}
    code, _, err = cli(capsys, "train-ar", "--no-progress", *(str(names.get(a, a)) for a in args))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_sample_takes_a_checkpoint_or_a_demo(tmp_path, capsys):
    code, _, err = cli(capsys, "sample", "--output", tmp_path / "x.npz")
    assert code == 2 and "give the generator with --ckpt FILE or --demo NAME" in err
    code, _, err = cli(capsys, "sample", "--demo", "digits", "--ckpt", "x", "--output", tmp_path / "x.npz")
    assert code == 2 and "(one of them)" in err
    code, _, err = cli(capsys, "sample", "--demo", "digits", "--config", "B", "--output", tmp_path / "x.npz")
    assert code == 2 and "--config applies to --ckpt" in err


def test_sample_demo_digits_writes_images_and_labels(tmp_path, capsys):
    code, _, err = cli(capsys, "sample", "--demo", "digits", "--per-class", "2", "--output", tmp_path / "d.npz", "--no-progress")
    assert code == 0, err
    with np.load(tmp_path / "d.npz") as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].shape == (20, 32, 32, 3) and data["images"].dtype == np.uint8
        assert data["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert (tmp_path / "d.png").is_file()


def test_sample_demo_digits_in_bfloat16_is_recorded_and_a_rerun_must_match(tmp_path, capsys):
    out = tmp_path / "d.npz"
    code, _, err = cli(capsys, "sample", "--demo", "digits", "--per-class", "1", "--classes", "0-2", "--output", out,
                       "--no-progress", "--precision", "bf16")
    assert code == 0, err
    with np.load(out) as data:
        assert data["images"].shape == (3, 32, 32, 3) and data["labels"].tolist() == [0, 1, 2]
        assert data["images"].std() > 20  # pictures, not a flat field
    assert json.loads(out.with_suffix(".json").read_text())["model"]["precision"] == "bf16"
    code, _, err = cli(capsys, "sample", "--demo", "digits", "--per-class", "1", "--classes", "0-2", "--output", out,
                       "--no-progress")
    assert code == 2 and "made with other settings (model)" in err
