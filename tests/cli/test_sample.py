"""`wetok sample`: the command line over a saved random generator, its errors, and torchrun with
two processes giving the same file as one process, every image exactly once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import cli, listing, make_generator
from wetok import ar


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "g"
    ar.save(make_generator(), path)
    return path


def test_sample_writes_an_npz_and_its_record(tmp_path: Path, generator_dir: Path, capsys):
    code, out, err = cli(capsys, "sample", "--ckpt", generator_dir, "--classes", "1,3", "--per-class", "2", "--cfg-scale", "1.5,2",
                         "--top-k", "4", "--output", tmp_path / "s.npz", "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "4 images" in out
    with np.load(tmp_path / "s.npz") as data:
        assert data["arr_0"].shape == (4, 16, 16, 3) and data["arr_1"].tolist() == [1, 1, 3, 3]
    assert listing(tmp_path) == ["s.json", "s.npz", "s.png"]


@pytest.mark.parametrize("argv, message", [
    (["--cfg-scale", "1,2,3"], "cfg_scale: give one value or 2"),
    (["--classes", "9"], "outside the model's labels 0..4"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--temperature", "x"], "give a number or a comma list"),
    (["--output", "out.txt"], "give a folder (PNG files) or a FILE.npz"),
])
def test_bad_settings_are_one_line_and_write_nothing(tmp_path: Path, generator_dir: Path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    base = ["sample", "--ckpt", str(generator_dir), "--per-class", "1", "--output", "s.npz", "--device", "cpu", "--no-progress"]
    code, _, err = cli(capsys, *base, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert listing(tmp_path) == []


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys):
    code, _, err = cli(capsys, "sample", "--ckpt", tmp_path / "nope.ckpt", "--output", tmp_path / "s.npz")
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_and_two_processes_give_the_same_file(tmp_path: Path, generator_dir: Path):
    """9 images in batches of 2 (5 batches, the last of one image) dealt to two gloo processes:
    every image exactly once, bit for bit those of one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    common = ["-m", "wetok", "sample", "--ckpt", str(generator_dir), "--classes", "0,2,4", "--per-class", "3", "--cfg-scale", "1.5",
              "--top-p", "0.9", "--seed", "5", "--batch-size", "2", "--device", "cpu", "--no-progress"]
    results = []
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                                                  f"--master_port={_free_port()}"])]:
        out = tmp_path / f"{name}.npz"
        done = subprocess.run([sys.executable, *launcher, *common, "--output", str(out)], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        with np.load(out) as data:
            results.append((data["arr_0"], data["arr_1"]))
    (one_images, one_labels), (two_images, two_labels) = results
    assert one_images.shape == (9, 16, 16, 3)
    assert np.array_equal(one_images, two_images) and np.array_equal(one_labels, two_labels)
    assert len({im.tobytes() for im in one_images}) == 9
