"""`wetok train` on the command line: a run, a resume, and one-line errors with exit status 2."""

from __future__ import annotations

import pytest

from support import TINY_CONFIG, make_images, read_metrics
from wetok.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["train", "--no-progress", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_train_resume_and_export(tmp_path, capsys):
    make_images(tmp_path / "data", 4)
    common = ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "run")]
    status, out, _ = run(capsys, "--config", str(TINY_CONFIG), *common, "--steps", "2", "--ckpt-every", "1")
    assert status == 0 and "finished 2 steps" in out
    status, out, _ = run(capsys, *common, "--resume", "--steps", "3", "--set", "train.log_every=1")
    assert status == 0 and "resumed at step 2" in out
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [1, 2, 3]
    status, _, err = run(capsys, "--config", str(TINY_CONFIG), *common, "--resume", "--set", "optim.lr=1")
    assert status == 2 and "differs from the run's" in err
    status, out, _ = main(["train", "--output", str(tmp_path / "run"), "--export"]), capsys.readouterr().out, None
    assert status == 0 and "exported to" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "missing.yaml", "--data", ".", "--output", "o"], "missing.yaml: cannot read config"),
        (["--config", str(TINY_CONFIG), "--data", ".", "--output", "o", "--set", "train.stpes=3"], "unknown key(s) in section 'train': stpes"),
        (["--config", str(TINY_CONFIG), "--data", "no/such/dir", "--output", "o"], "no/such/dir: no such data directory"),
        (["--data", ".", "--output", "o"], "--config is required"),
        (["--config", str(TINY_CONFIG), "--output", "o"], "--data is required"),
        (["--config", str(TINY_CONFIG), "--data", "data", "--output", "data/a/img1.png/run"], "cannot create the run directory"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "data", 2)
    status, _, err = run(capsys, *args)
    assert status == 2
    assert message in err and err.count("\n") == 1


def test_resume_without_checkpoint(tmp_path, capsys):
    make_images(tmp_path / "data", 2)
    status, _, err = run(capsys, "--config", str(TINY_CONFIG), "--data", str(tmp_path / "data"), "--output",
                         str(tmp_path / "run"), "--resume")
    assert status == 2 and "--resume: no checkpoint in" in err


def test_a_stopped_peer_is_one_line(tmp_path, capsys, monkeypatch):
    from wetok.distributed import PeerLost
    from wetok.training import loop

    def peer_died(*args, **kwargs):
        raise PeerLost("another process stopped (Read error [127.0.0.1]:9613: Connection reset by peer); the last checkpoint is kept")

    monkeypatch.setattr(loop, "train", peer_died)
    make_images(tmp_path / "data", 2)
    status, _, err = run(capsys, "--config", str(TINY_CONFIG), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"))
    assert status == 2
    assert err == "wetok train: another process stopped (Read error [127.0.0.1]:9613: Connection reset by peer); the last checkpoint is kept\n"


def test_resume_auto_starts_or_continues(tmp_path, capsys):
    make_images(tmp_path / "data", 2)
    common = ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"), "--resume", "auto"]
    status, out, _ = run(capsys, "--config", str(TINY_CONFIG), *common, "--steps", "1")
    assert status == 0 and "no checkpoint yet, starting the run" in out
    status, out, _ = run(capsys, *common, "--steps", "2")
    assert status == 0 and "resumed at step 1" in out
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [1, 2]
    status, _, err = run(capsys, *common[:4], "--resume", "sometimes")
    assert status == 2 and "--resume: expected nothing or auto, got 'sometimes'" in err
