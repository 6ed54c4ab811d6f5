"""benchmarks/tiling.py end to end at a small size: every mode runs, resumed statistics give the
bits of statistics rerun from the input, and whole-image statistics land closer to untiled than
per-window ones; a bad model name is one line."""

from __future__ import annotations

import re
import subprocess
import sys

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


def test_a_bad_model_name_is_one_line():
    done = run("--model", "no-such-model")
    assert done.returncode != 0 and "unknown model 'no-such-model'" in done.stderr
    assert "Traceback" not in done.stderr
