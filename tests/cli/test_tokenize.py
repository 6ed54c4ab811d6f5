"""`wetok tokenize` on the command line: the summary line (images/s), the exit codes, usage errors,
and one process against two under a real torchrun (gloo): every image exactly once, the same
shards bit for bit. The tokenizer is a random-weight one (`support.make_model_dir`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support import TINY, cli, listing, make_model_dir, write_photo
from wetok.ar.shards import open_shards


@pytest.fixture(scope="module")
def MODEL(tmp_path_factory) -> list[str]:
    return ["--ckpt", str(make_model_dir(tmp_path_factory.mktemp("tokenizer"), TINY))]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """ImageNet's layout, DATA/train/<class>/..., 9 pictures in 3 classes and one truncated JPEG."""
    root = tmp_path_factory.mktemp("data")
    for k in range(9):
        write_photo(root / "train" / f"n0{k % 3}" / f"{k}.png", 16 + 3 * k, 24, seed=k)
    whole = write_photo(root / "whole.jpg", 30, 30).read_bytes()
    (root / "whole.jpg").unlink()
    (root / "train" / "n01" / "broken.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def test_tokenize_prints_what_it_made_and_exits_1_for_skipped_images(tmp_path: Path, capsys, MODEL: list[str], data: Path):
    out = tmp_path / "shards"
    argv = ["tokenize", *MODEL, "--data", data, "--output", out, "--size", "16", "--shard-size", "4", "--workers", "0",
            "--device", "cpu", "--no-progress"]
    code, stdout, stderr = cli(capsys, *argv)
    assert code == 1, stderr
    assert "wetok tokenize: skipped n01/broken.jpg: truncated or corrupt image" in stderr
    assert stdout.startswith("wetok: tokenized 9 images, skipped 1 (n01/broken.jpg: truncated or corrupt image")
    assert f"into {out}: 18 rows (2 view(s) of 4x4x2 tokens), 3 shard(s); 10 files read in " in stdout
    assert "images/s)" in stdout and f"unreadable images listed in {out / 'manifest.json'}" in stdout
    s = open_shards(out)
    assert s.manifest.classes == ("n00", "n01", "n02") and s.manifest.files[6] == "n01/broken.jpg" and s.num_images == 9
    code, stdout, _ = cli(capsys, *argv)  # again: complete, nothing to do
    assert code == 1 and "3 shard(s), already complete" in stdout and "(n01/broken.jpg: unreadable)" in stdout


def test_a_clean_folder_exits_0(tmp_path: Path, capsys, MODEL: list[str]):
    for k in range(3):
        write_photo(tmp_path / "digits" / str(k) / "a.png", 16, 16, seed=k)
    code, stdout, stderr = cli(capsys, "tokenize", *MODEL, "--data", tmp_path / "digits", "-o", tmp_path / "out", "--size", "16",
                               "--augment", "none", "--workers", "0", "--device", "cpu")
    assert code == 0, stderr
    assert stdout.startswith("wetok: tokenized 3 images into") and "3 rows (1 view(s) of 4x4x2 tokens), 1 shard(s);" in stdout
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["file_labels"] == [0, 1, 2]


@pytest.mark.parametrize("argv, message", [
    (["--augment", "mirror"], "argument --augment: invalid choice: 'mirror'"),
    (["--crop-range", "0.5"], "argument --crop-range: must be from 1 to 4, got 0.5"),
    (["--size", "0"], "argument --size: must be 1..65535, got 0"),
    (["--shard-size", "0"], "argument --shard-size: must be at least 1, got 0"),
    (["--layout", "coco"], "argument --layout: invalid choice: 'coco'"),
])
def test_usage_errors_are_one_line(tmp_path: Path, capsys, MODEL: list[str], data: Path, argv: list[str], message: str):
    code, _, stderr = cli(capsys, "tokenize", *MODEL, "--data", data, "-o", tmp_path / "out", *argv)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_errors_are_one_line_and_write_nothing(tmp_path: Path, capsys, MODEL: list[str], data: Path):
    code, _, stderr = cli(capsys, "tokenize", *MODEL, "--data", tmp_path / "nothing", "-o", tmp_path / "out", "--device", "cpu")
    assert code == 2 and stderr == f"wetok: error: {tmp_path / 'nothing'}: no such data directory\n"
    code, _, stderr = cli(capsys, "tokenize", *MODEL, "--data", data, "-o", tmp_path / "out", "--size", "18", "--device", "cpu")
    assert code == 2 and "--size 18 is not a multiple of the tokenizer's downsample factor 4" in stderr
    assert not (tmp_path / "out").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_and_two_processes_make_the_same_shards(tmp_path: Path, MODEL: list[str], data: Path):
    """10 files in shards of 3 (4 shards, the last of one file) dealt to two gloo processes: every
    image exactly once, the same files bit for bit as one process writes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    common = ["-m", "wetok", "tokenize", *MODEL, "--data", str(data), "--size", "16", "--shard-size", "3", "--batch-size", "2",
              "--workers", "0", "--device", "cpu", "--no-progress"]
    outputs = {}
    for name, launcher in [("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                                                  f"--master_port={_free_port()}"])]:
        out = tmp_path / name
        done = subprocess.run([sys.executable, *launcher, *common, "--output", str(out)], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 1, done.stderr[-3000:]  # 1: the broken file was skipped
        assert done.stdout.count("wetok: tokenized 9 images, skipped 1") == 1  # process 0 speaks
        assert done.stderr.count("skipped n01/broken.jpg") == 1  # by the process whose shard holds it
        outputs[name] = out
    one, two = outputs["one"], outputs["two"]
    assert listing(one) == listing(two) == ["manifest.json", *[f"shard-0000{k}.npz" for k in range(4)], "tokenize.json"]
    for name in listing(one):
        if name.endswith(".npz"):
            with np.load(one / name) as a, np.load(two / name) as b:
                assert a.files == b.files and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a.files)
        else:
            assert (one / name).read_text() == (two / name).read_text()
    s = open_shards(two)
    assert s.image[s.rows_of_image[:, 0]].tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # image 6, n01/broken.jpg, has no rows
    assert len({t.tobytes() for t in s.tokens}) == 18
