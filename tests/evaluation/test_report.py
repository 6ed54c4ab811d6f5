"""The report's guarantees: an error (never a table of NaN) when no image could be evaluated,
strict JSON (no NaN or Infinity: a metric that is not finite goes to `unavailable`, an identical
reconstruction's PSNR is capped), and every file evaluated or skipped exactly once, checked by an
error that `python -O` keeps (not an `assert`)."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wetok
from support import REPO, TINY, make_model_dir, write_photo
from wetok.errors import WetokError
from wetok.evaluation import EvalConfig, Networks, evaluate, format_table
from wetok.evaluation.report import _merge
from wetok.evaluation.run import psnr_ceiling


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> wetok.Tokenizer:
    return wetok.load(make_model_dir(tmp_path_factory.mktemp("model"), TINY))


def _broken(folder: Path) -> dict:
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "b.jpg").write_bytes(b"")
    good = write_photo(folder / "c.png", 40, 40)
    (folder / "c.png").write_bytes(good.read_bytes()[:60])  # truncated
    return {"size": 32}


def _too_small(folder: Path) -> dict:
    for k, (h, w) in enumerate([(5, 40), (40, 6), (3, 3)]):
        write_photo(folder / f"s{k}.png", h, w, seed=k)
    return {"size": None}


def _too_large(folder: Path) -> dict:
    for k in range(2):
        write_photo(folder / f"l{k}.png", 40, 56, seed=k)
    return {"size": None, "max_side": 30}


def _mixed(folder: Path) -> dict:
    """One of each way to be skipped, nothing else."""
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_photo(folder / "b.png", 4, 40)
    write_photo(folder / "c.png", 40, 64)
    return {"size": None, "max_side": 50}


@pytest.mark.parametrize("make", [_broken, _too_small, _too_large, _mixed])
def test_nothing_evaluable_is_an_error_not_a_report_of_nan(tmp_path: Path, model: wetok.Tokenizer, make) -> None:
    folder = tmp_path / "data"
    settings = make(folder)
    count = len(list(folder.iterdir()))
    with pytest.raises(WetokError, match=rf"no image could be evaluated, all {count} files skipped \(") as caught:
        evaluate(model, EvalConfig(data=folder, metrics="psnr,ssim,usage", progress=False, **settings), device="cpu")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("layout", ["empty", "no images", "only hidden"])
def test_a_folder_without_image_files(tmp_path: Path, model: wetok.Tokenizer, layout: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    if layout == "no images":
        (folder / "notes.txt").write_text("x")
        (folder / "sub").mkdir()
    elif layout == "only hidden":
        write_photo(folder / ".hidden.png", 40, 40)
    with pytest.raises(WetokError, match="no image files"):
        evaluate(model, EvalConfig(data=folder, metrics="psnr", progress=False), device="cpu")


def _strict(report: dict) -> dict:
    return json.loads(json.dumps(report, allow_nan=False))


def test_identical_reconstructions_have_a_finite_psnr(tmp_path: Path, model: wetok.Tokenizer) -> None:
    """WebP reproduces a flat picture exactly: scikit-image's PSNR is +inf there. The report counts
    it as `psnr_ceiling` (above any PSNR a picture of that size can have) and says so."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for k, value in enumerate((0, 128, 200)):
        Image.fromarray(np.full((40, 48, 3), value, np.uint8)).save(folder / f"flat{k}.png")
    write_photo(folder / "photo.png", 40, 48)
    config = EvalConfig(data=folder, size=None, metrics="psnr,ssim", baselines=("webp",), per_image=True, progress=False)
    report = evaluate(model, config, device="cpu").report
    assert _strict(report) == report
    ceiling = psnr_ceiling(40 * 48 * 3)
    assert ceiling == pytest.approx(10 * math.log10(255**2 * 40 * 48 * 3))
    rows = {r["path"]: r for r in report["per_image"]}
    for k in range(3):
        assert rows[f"flat{k}.png"]["webp.psnr"] == ceiling and rows[f"flat{k}.png"]["webp.psnr_identical"] is True
    assert "webp.psnr_identical" not in rows["photo.png"] and rows["photo.png"]["webp.psnr"] < ceiling
    assert all("psnr_identical" not in r for r in rows.values())  # the random tokenizer is never exact
    assert report["baselines"]["webp"]["psnr"] == pytest.approx(np.mean([r["webp.psnr"] for r in rows.values()]))
    assert report["notes"] and "webp 3 of 4 images" in report["notes"][0]
    assert f"note: {report['notes'][0]}" in format_table(report)


class _NaNMetric(torch.nn.Module):
    """An LPIPS stand-in that gives NaN for every image (as a broken weights file could)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), float("nan"))


def test_a_metric_that_is_not_finite_goes_to_unavailable(tmp_path: Path, model: wetok.Tokenizer) -> None:
    folder = tmp_path / "data"
    for k in range(3):
        write_photo(folder / f"p{k}.png", 40, 40, seed=k)
    nets = Networks(lpips_alex=_NaNMetric())
    config = EvalConfig(data=folder, size=32, metrics="psnr,lpips_alex", baselines=("jpeg",), per_image=True, progress=False)
    report = evaluate(model, config, networks=nets, device="cpu").report
    assert _strict(report) == report
    assert "lpips_alex" not in report["metrics"] and "not a finite number" in report["unavailable"]["lpips_alex"]
    assert report["metrics"]["psnr"] > 0
    entry = report["baselines"]["jpeg"]
    assert "lpips_alex" not in entry and "not a finite number" in entry["unavailable"]["lpips_alex"]
    assert all(r["lpips_alex"] is None and r["jpeg.lpips_alex"] is None for r in report["per_image"])
    assert "| LPIPS alex ↓ | n/a | n/a |" in format_table(report)


# ---- exactly once -------------------------------------------------------------------------------
def _part(records: list[int], skipped: list[int] = (), digest: str = "d") -> dict:
    return {"records": {i: {"bpp": 1.0} for i in records}, "skipped": [(i, "bad") for i in skipped], "grid": {},
            "usage": None, "features": {}, "files_digest": digest}


NAMES = [f"img{i}.png" for i in range(6)]


def test_every_file_once_or_an_error_naming_them() -> None:
    merged = _merge([_part([0, 2, 4]), _part([1, 3], skipped=[5])], NAMES)
    assert sorted(merged.records) == [0, 1, 2, 3, 4] and merged.skipped == [(5, "bad")]
    with pytest.raises(WetokError, match=r"2 never evaluated \(img3.png, img5.png\)"):
        _merge([_part([0, 2, 4]), _part([1])], NAMES)
    with pytest.raises(WetokError, match=r"1 evaluated more than once \(img2.png\)"):
        _merge([_part([0, 2, 4]), _part([1, 2, 3, 5])], NAMES)
    with pytest.raises(WetokError, match=r"1 evaluated more than once \(img4.png\)"):  # evaluated and skipped
        _merge([_part([0, 2, 4]), _part([1, 3, 5], skipped=[4])], NAMES)
    with pytest.raises(WetokError, match=r"never evaluated \(img1.png.*more than once \(#9\)"):
        _merge([_part([0, 2, 3, 4, 5, 9])], NAMES)
    many = [f"f{i}.png" for i in range(20)]
    with pytest.raises(WetokError, match=r"19 never evaluated \(f1.png, f2.png, f3.png, f4.png, f5.png and 14 more\)"):
        _merge([_part([0])], many)
    with pytest.raises(WetokError, match="process 1 found other files than process 0"):
        _merge([_part([0, 1, 2]), _part([3, 4, 5], digest="other")], NAMES)


def test_the_check_survives_python_O() -> None:
    """`python -O` removes `assert`s: the exactly-once check is an error, so it still runs."""
    script = ("from wetok.evaluation.report import _merge\n"
              "from wetok.errors import WetokError\n"
              "part = {'records': {0: {}}, 'skipped': [], 'grid': {}, 'usage': None, 'features': {}}\n"
              "try:\n    _merge([part], ['a.png', 'b.png'])\nexcept WetokError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-O", "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: evaluation did not cover every file exactly once: 1 never evaluated (b.png)" in done.stdout


def test_no_assert_guards_the_evaluation() -> None:
    """Invariants of evaluation are explicit errors, never `assert` (which `python -O` drops)."""
    sources = [*sorted((REPO / "src" / "wetok" / "evaluation").glob("*.py")), REPO / "src" / "wetok" / "cli" / "evaluate.py"]
    found = [f"{p.name}:{node.lineno}" for p in sources for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Assert)]
    assert found == []


def test_only_a_lost_peer_becomes_a_peer_error() -> None:
    from wetok.evaluation.run import PeerError, _collective

    lost = r"^another process stopped \(gathering: Timed out waiting 5ms for recv operation to complete\)$"
    with pytest.raises(PeerError, match=lost), _collective("gathering"):
        raise RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 5ms for recv operation to complete")
    with pytest.raises(RuntimeError, match="out of memory") as caught, _collective("gathering"):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert not isinstance(caught.value, PeerError)
