"""The README's main command (scripts/demo.sh runs scripts/demo.py) produces its pictures."""

from __future__ import annotations

import runpy

import numpy as np
from PIL import Image

from support import REPO

DEMO = REPO / "scripts" / "demo.py"


def test_demo_writes_reconstruction_and_comparison(tmp_path, capsys):
    namespace = runpy.run_path(str(DEMO), run_name="demo")
    assert namespace["main"](["--output", str(tmp_path), "--size", "128"]) == 0
    recon = np.asarray(Image.open(tmp_path / "reconstruction.png"))
    comparison = np.asarray(Image.open(tmp_path / "comparison.png"))
    assert recon.shape == (128, 128, 3) and comparison.shape == (128, 256, 3)
    assert np.array_equal(comparison[:, 128:], recon)
    out = capsys.readouterr().out
    assert "bits/pixel" in out and "PSNR" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.png", "reconstruction.png"]
