"""`wetok evaluate` on the command line: files, table, errors, one process against two under
torchrun, and a killed peer. The model is a random-weight tokenizer (`support.make_model_dir`):
nothing here is about the original's numbers, so nothing needs the reference fixtures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wetok
from support import TINY, listing, make_model_dir, photo_folder, write_inception, write_lpips_backbone, write_photo
from wetok.cli.main import main
from wetok.metrics.lpips import HEAD_FILES, lpips_package_heads


@pytest.fixture(scope="module")
def MODEL(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The model options naming a saved random-weight tokenizer (f = 4, 8 bits per token)."""
    return ["--ckpt", str(make_model_dir(tmp_path_factory.mktemp("model"), TINY))]


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in report.json: not JSON")

    return json.loads(text, parse_constant=refuse)


def test_writes_report_grid_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                      MODEL: list[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no metric weights anywhere
    data = photo_folder(tmp_path / "photos")
    out = tmp_path / "out" / "report.json"
    rc = main(["evaluate", *MODEL, "--data", str(data), "--size", "32", "--output", str(out), "--no-progress",
               "--workers", "0", "--grid-count", "2", "--device", "cpu"])
    assert rc == 0
    report = _strict_json(out.read_text())
    assert report["num_images"] == 5 and set(report["metrics"]) == {"psnr", "ssim", "usage"}
    assert set(report["unavailable"]) == {"lpips_alex", "lpips_vgg", "rfid"}
    assert "alexnet-owt-7be5be79.pth" in report["unavailable"]["lpips_alex"]
    assert report["model"]["architecture_hash"] and report["versions"]["torch"]
    assert (tmp_path / "out" / "report.png").is_file()
    captured = capsys.readouterr()
    assert f"| PSNR (dB) ↑ | {report['metrics']['psnr']:.3f} |" in captured.out
    assert "rfid not computed: FID InceptionV3 weights: pt_inception-2015-12-05-6726825d.pth not found" in captured.err


def test_unwritable_outputs_fail_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], MODEL: list[str]) -> None:
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
        (["--data", "{tmp}", "--timeout-seconds", "0"], "timeout must be above 0"),
        (["--data", "{tmp}", "--timeout-seconds", "nan"], "timeout must be above 0"),
        (["--data", "{tmp}/empty"], "no image files"),
        (["--data", "{tmp}/broken"], "no image could be evaluated, all 3 files skipped (a.png: not an image"),
        (["--data", "{tmp}/small", "--original-resolution"], "all 2 files skipped (s0.png: 40x5: smaller than the 7x7 SSIM window"),
        (["--data", "{tmp}/large", "--original-resolution", "--max-side", "30"], "all 2 files skipped (l0.png: 56x40: a side above 30"),
        (["--data", "{tmp}/broken", "--baselines", "jpeg,webp", "--per-image"], "no image could be evaluated"),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str,
                                               MODEL: list[str]) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "broken").mkdir()
    for name, data in [("a.png", b"not a png"), ("b.jpg", b""), ("c.webp", b"RIFF\0\0\0\0WEBP")]:
        (tmp_path / "broken" / name).write_bytes(data)
    for k in range(2):
        write_photo(tmp_path / "small" / f"s{k}.png", 5, 40, seed=k)
        write_photo(tmp_path / "large" / f"l{k}.png", 40, 56, seed=k)
    before = listing(tmp_path)
    out = tmp_path / "out" / "report.json"
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--metrics" not in args:
        args += ["--metrics", "psnr,ssim,usage"]  # no metric networks: no "not computed" notices
    assert main(["evaluate", *MODEL, *args, "--output", str(out), "--no-progress", "--workers", "0", "--device", "cpu",
                 "--weights-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("wetok: error: ")
    assert listing(tmp_path) == before  # no report, no grid, no temporary file


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


def test_one_and_two_processes_give_identical_reports(tmp_path: Path, MODEL: list[str]) -> None:
    """5 readable images (odd) + 1 broken, batches of 2: under torchrun the batches are dealt to two
    gloo processes; every number of the report must be the same as with one process."""
    heads = lpips_package_heads("alex")
    assert heads is not None, "the lpips package (a dependency of wetok) carries the LPIPS v0.1 heads"
    weights = tmp_path / "weights"
    write_lpips_backbone(weights, "alex")
    shutil.copy(heads, weights / HEAD_FILES["alex"])
    write_inception(weights)
    data = photo_folder(tmp_path / "photos")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    common = ["-m", "wetok", "evaluate", *MODEL, "--data", str(data), "--size", "32", "--batch-size", "2", "--workers", "0",
              "--metrics", "psnr,ssim,lpips_alex,rfid,usage", "--weights-dir", str(weights), "--device", "cpu", "--no-progress",
              "--grid", "none", "--per-image", "--timeout-seconds", "300"]
    reports = []
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                                                  f"--master_port={_free_port()}"])]:
        out = tmp_path / name / "report.json"
        cmd = [sys.executable, *launcher, *common, "--output", str(out),
               "--fid-stats", str(tmp_path / name / "fid.npz")]
        done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        reports.append(_strict_json(out.read_text()))
    one, two = reports
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["num_images"] == two["num_images"] == 5
    assert one["skipped"] == two["skipped"] and len(one["skipped"]) == 1
    assert one["metrics"] == two["metrics"]  # psnr, ssim, lpips_alex, rfid, usage: bit for bit
    assert one["per_image"] == two["per_image"]
    assert set(one["metrics"]) == {"psnr", "ssim", "lpips_alex", "rfid", "usage"} and one["metrics"]["rfid"] > 0


# ---- a peer that dies ---------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ..., utime, stime at 11, 12)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _child(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                return int(entry.name)
    return None


def _cpu_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])


def _wait_for(what: str, probe, deadline: float):  # type: ignore[no-untyped-def]
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the worker processes in /proc (Linux only)")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_dead_or_hung_peer_ends_the_other_process_with_one_line(tmp_path: Path, MODEL: list[str], how: str) -> None:
    """Two torchrun agents of one process each (as on two machines, where no agent sees the other's
    worker die): process 1 gets large images, process 0 small ones and then waits for process 1 in
    the gather. There process 1 is killed (gloo sees the connection close) or stopped (a hung peer:
    only the timeout ends the wait); process 0 must end within --timeout-seconds with one
    `wetok evaluate: another process stopped (...)` line and a non-zero exit, writing nothing."""
    timeout_s = 15
    data = tmp_path / "data"
    for k in range(0, 8, 2):  # batches of one image, dealt alternately: process 0 gets 0, 2, 4, 6
        write_photo(data / f"{k}.png", 32, 32, seed=k)
        write_photo(data / f"{k + 1}.png", 1000, 1000, seed=k)  # process 1: busy for a minute
    out = tmp_path / "out"
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TORCH_HOME": str(tmp_path / "torch")}
    agents, logs = [], []
    for node in (0, 1):
        log = open(tmp_path / f"agent{node}.log", "w")  # noqa: SIM115 (closed below)
        logs.append(log)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}",
               "--master_addr=127.0.0.1", f"--master_port={port}", "--max_restarts=0",
               "-m", "wetok", "evaluate", *MODEL, "--data", str(data), "--original-resolution", "--metrics", "psnr",
               "--batch-size", "1", "--workers", "0", "--device", "cpu", "--no-progress", "--grid", "none",
               "--timeout-seconds", str(timeout_s), "--output", str(out / "report.json")]
        agents.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.monotonic() + 240
        worker0 = _wait_for("process 0", lambda: _child(agents[0].pid), deadline)
        worker1 = _wait_for("process 1", lambda: _child(agents[1].pid), deadline)
        # Process 0 is done with its image and waits (its CPU time stands still) while process 1 works.
        last0, last1, still = _cpu_ticks(worker0), _cpu_ticks(worker1), 0
        while still < 10 and time.monotonic() < deadline and agents[0].poll() is None:
            time.sleep(0.3)
            now0, now1 = _cpu_ticks(worker0), _cpu_ticks(worker1)
            still = still + 1 if now0 is not None and now0 <= (last0 or 0) + 1 and now1 is not None and now1 > (last1 or 0) + 10 else 0
            last0 = now0
            last1 = now1 if still == 0 else last1
        os.kill(worker1, getattr(signal, how))
        killed = time.monotonic()
        rc0 = agents[0].wait(timeout=timeout_s + 120)
        took = time.monotonic() - killed
        if how == "SIGSTOP":
            os.kill(worker1, signal.SIGKILL)
        agents[1].wait(timeout=60)
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        for log in logs:
            log.close()
    text = (tmp_path / "agent0.log").read_text()
    lines = [line for line in text.splitlines() if line.startswith("wetok evaluate: another process stopped (")]
    assert rc0 != 0 and len(lines) == 1, text[-3000:]
    assert took < timeout_s + 60, (took, lines)
    if how == "SIGSTOP":
        assert f"{timeout_s * 1000}ms" in lines[0] or "Timed out" in lines[0], lines
    assert f"{Path(wetok.__file__).parent}/" not in text  # no traceback through wetok's code (torchrun prints its own summary)
    assert not out.exists() or listing(out) == []


@pytest.mark.parametrize("option, value", [("--seed", str(10**23)), ("--seed", "-1"), ("--size", "70000"), ("--batch-size", "0"),
                                           ("--limit", "0"), ("--workers", "-2"), ("--grid-count", "x"), ("--pad-multiple", "0")])
def test_option_values_are_checked_as_in_every_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str,
                                                          value: str) -> None:
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data", str(tmp_path), option, value, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wetok: error: argument " + option) and not out.exists()
