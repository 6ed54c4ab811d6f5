"""`wetok evaluate` on the command line: files, table, errors, and one process against two under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support import REFERENCE, photo_folder, write_inception, write_lpips_backbone
from wetok.cli.main import main
from wetok.metrics.lpips import HEAD_FILES, lpips_package_heads

pytest.importorskip("skimage")
FIXTURES = REFERENCE
pytestmark = pytest.mark.skipif(not (FIXTURES / "tiny_d16.ckpt").is_file(), reason=f"fixture checkpoints absent ({FIXTURES})")
MODEL = ["--ckpt", str(FIXTURES / "tiny_d16.ckpt"), "--config", str(FIXTURES / "tiny_d16.yaml")]


def test_writes_report_grid_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no metric weights anywhere
    data = photo_folder(tmp_path / "photos")
    out = tmp_path / "out" / "report.json"
    rc = main(["evaluate", *MODEL, "--data", str(data), "--size", "32", "--output", str(out), "--no-progress",
               "--workers", "0", "--grid-count", "2", "--device", "cpu"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["num_images"] == 5 and set(report["metrics"]) == {"psnr", "ssim", "usage"}
    assert set(report["unavailable"]) == {"lpips_alex", "lpips_vgg", "rfid"}
    assert "alexnet-owt-7be5be79.pth" in report["unavailable"]["lpips_alex"]
    assert report["model"]["architecture_hash"] and report["versions"]["torch"]
    assert (tmp_path / "out" / "report.png").is_file()
    captured = capsys.readouterr()
    assert f"| PSNR (dB) ↑ | {report['metrics']['psnr']:.3f} |" in captured.out
    assert "rfid not computed: FID InceptionV3 weights: pt_inception-2015-12-05-6726825d.pth not found" in captured.err


def test_unwritable_outputs_fail_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = photo_folder(tmp_path / "photos")
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--output", str(tmp_path / "afile" / "report.json")], "afile is a file, not a directory"),
        (["--output", str(tmp_path)], "is a directory; --output names a file"),
        (["--output", str(tmp_path / "r.json"), "--grid", str(tmp_path / "afile" / "g.png")], "afile is a file, not a directory"),
        (["--output", str(tmp_path / "r.json"), "--grid", str(tmp_path / "r.json")], "cannot be the same file"),
    ]
    for extra, message in cases:
        assert main(["evaluate", *MODEL, "--data", str(data), "--size", "32", "--no-progress", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "photos"]


def test_no_model_without_a_default_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_default_model: None) -> None:
    assert main(["evaluate", "--data", str(tmp_path), "--output", str(tmp_path / "r.json"), "--no-progress"]) == 2
    assert "no model given, and this wetok build has no default model yet" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "{tmp}/absent"], "no such folder"),
        (["--data", "{tmp}", "--metrics", "psnr,fid"], "unknown metric 'fid'"),
        (["--data", "{tmp}", "--baselines", "gif"], "unknown baseline codec"),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    out = tmp_path / "report.json"
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert main(["evaluate", *MODEL, *args, "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_model_choice_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The model options are those of every subcommand (`cli.options`): the same checks, the same words."""
    common = ["evaluate", "--data", str(tmp_path), "--output", str(tmp_path / "r.json")]
    assert main([*common, "--ckpt", "x.ckpt", "--config", "x.yaml", "--preset", "imagenet-d16"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*common, "--config", "x.yaml"]) == 2
    assert "give the checkpoint with --ckpt" in capsys.readouterr().err
    assert main([*common, "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main([*common, "--ckpt", "x.ckpt", "--preset", "imagenet-d16"]) == 2  # accepted: the preset is the architecture
    assert "x.ckpt: no such file, directory or preset" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_and_two_processes_give_identical_reports(tmp_path: Path) -> None:
    """5 readable images (odd) + 1 broken, batches of 2: under torchrun the batches are dealt to two
    gloo processes; every number of the report must be the same as with one process."""
    heads = lpips_package_heads("alex")
    if heads is None:
        pytest.skip("the lpips package (LPIPS v0.1 heads) is not installed")
    weights = tmp_path / "weights"
    write_lpips_backbone(weights, "alex")
    shutil.copy(heads, weights / HEAD_FILES["alex"])
    write_inception(weights)
    data = photo_folder(tmp_path / "photos")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    common = ["-m", "wetok", "evaluate", *MODEL, "--data", str(data), "--size", "32", "--batch-size", "2", "--workers", "0",
              "--metrics", "psnr,ssim,lpips_alex,rfid,usage", "--weights-dir", str(weights), "--device", "cpu", "--no-progress",
              "--grid", "none", "--per-image"]
    reports = []
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                                                  f"--master_port={_free_port()}"])]:
        out = tmp_path / name / "report.json"
        cmd = [sys.executable, *launcher, *common, "--output", str(out),
               "--fid-stats", str(tmp_path / name / "fid.npz")]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        reports.append(json.loads(out.read_text()))
    one, two = reports
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["num_images"] == two["num_images"] == 5
    assert one["skipped"] == two["skipped"] and len(one["skipped"]) == 1
    assert one["metrics"] == two["metrics"]  # psnr, ssim, lpips_alex, rfid, usage: bit for bit
    assert one["per_image"] == two["per_image"]
    assert set(one["metrics"]) == {"psnr", "ssim", "lpips_alex", "rfid", "usage"} and one["metrics"]["rfid"] > 0
