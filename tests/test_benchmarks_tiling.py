"""benchmarks/tiling.py end to end at a small size: every mode runs, resumed statistics give the
bits of statistics rerun from the input, and whole-image statistics land closer to untiled than
per-window ones; a bad model name is one line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support import REPO, require_reference

SCRIPT = str(REPO / "benchmarks" / "tiling.py")


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=600)


def test_all_modes_at_a_small_size():
    require_reference()
    done = run("--model", "tiny_d8_g8", "--size", "192", "--tile", "96", "--overlap", "32", "--threads", "1",
               "--rerun", "--cache-bytes", "20000")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "resumed vs rerun from the input: identical tokens and reconstruction" in out
    assert re.search(r"whole-image / per-window statistics time: encode \d+\.\d\dx", out)
    distance = {m[0]: float(m[1]) for m in re.findall(r"tiled, (image|window) stats\s+difference .*?PSNR\(untiled, tiled\)\s+([\d.]+) dB", out)}
    assert distance["image"] > distance["window"], out


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["--size", "8"], "--size must be at least 32 pixels for this model, got 8"),
    (["--overlap", "-5"], "the tile overlap must be a whole number of pixels >= 0, got -5"),
    (["--tile", "64", "--overlap", "32"], "tile overlap 32px must be less than half the tile (64px)"),
    (["--cache-bytes", "-1"], "the tile cache budget must be a whole number of bytes >= 0, got -1"),
])
def test_bad_input_is_one_line(argv, message):
    require_reference()
    done = run("--model", "tiny_d16", *argv)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
