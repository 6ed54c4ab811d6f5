"""`wetok gfid` on the command line: the table and the JSON report (the library's numbers with the
same weight file), and one-line errors (exit 2) for bad `.npz` files and missing Inception
weights. The weights are a random-weight file in pytorch-fid's layout (`support.write_inception`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support import write_inception
from wetok.ar.gfid import evaluate_samples
from wetok.cli.main import main
from wetok.metrics.inception import WEIGHTS_FILE, FIDInceptionV3

RNG = np.random.default_rng(4)
SAMPLES = RNG.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
REFERENCE = np.concatenate([SAMPLES[:3], RNG.integers(0, 200, size=(4, 40, 40, 3), dtype=np.uint8)[:, 4:36, 4:36]])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gfid_cli")
    np.savez(root / "samples.npz", SAMPLES)
    np.savez_compressed(root / "ref.npz", REFERENCE, np.zeros(len(REFERENCE), np.int64))
    return {"root": root, "weights": write_inception(root / "weights").parent}


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (no weights found there) and a fresh cache folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_table_and_report(setup: dict[str, Path], homes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = homes / "out" / "report.json"
    rc = main(["gfid", str(setup["root"] / "samples.npz"), "--reference", str(setup["root"] / "ref.npz"),
               "--weights-dir", str(setup["weights"]), "--device", "cpu", "--batch-size", "4", "--no-progress",
               "--output", str(out)])
    assert rc == 0
    report = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the report"))
    want = evaluate_samples(setup["root"] / "samples.npz", setup["root"] / "ref.npz", batch_size=4, progress=False,
                            network=FIDInceptionV3(setup["weights"] / WEIGHTS_FILE))
    assert want["reference_cached"]  # the command line wrote $XDG_CACHE_HOME/wetok/gfid
    assert list((homes / "xdg" / "wetok" / "gfid").glob("*.npz"))
    for key in ("inception_score", "fid", "sfid", "precision", "recall"):
        assert report["metrics"][key] == pytest.approx(want[key], rel=1e-9), key
    assert report["num_samples"] == 6 and report["num_reference"] == 7 and report["reference_statistics"] == "computed"
    assert report["network"] == want["network"] and report["versions"]["torch"] and report["batch_size"] == 4
    assert report["metrics"]["precision"] >= 0.5 and report["metrics"]["fid"] > 0
    printed = capsys.readouterr().out
    assert f"| FID ↓ | {report['metrics']['fid']:.4f} |" in printed
    assert f"| Inception Score ↑ | {report['metrics']['inception_score']:.3f} |" in printed
    assert f"| Recall ↑ | {report['metrics']['recall']:.4f} |" in printed
    assert "6 samples against 7 reference images (computed reference statistics)" in printed


def _truncated(path: Path) -> None:
    np.savez(path, SAMPLES[:3])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 40])


@pytest.mark.parametrize("name, write, message", [
    ("no-arr_0", lambda p: np.savez(p, images=SAMPLES), "no arr_0 array"),
    ("float", lambda p: np.savez(p, SAMPLES.astype(np.float64)), "dtype float64, expected uint8"),
    ("pickled", lambda p: np.savez(p, np.array([object(), None], dtype=object)), "a pickled array"),
    ("truncated", _truncated, "not a valid .npz file"),
])
@pytest.mark.parametrize("which", ["samples", "reference"])
def test_bad_npz_is_one_line_exit_2(setup: dict[str, Path], homes: Path, capsys: pytest.CaptureFixture[str],
                                    name: str, write, message: str, which: str) -> None:  # type: ignore[no-untyped-def]
    bad = homes / f"{name}.npz"
    write(bad)
    good = setup["root"] / ("ref.npz" if which == "samples" else "samples.npz")
    samples, reference = (bad, good) if which == "samples" else (good, bad)
    out = homes / "report.json"
    rc = main(["gfid", str(samples), "--reference", str(reference), "--weights-dir", str(setup["weights"]),
               "--device", "cpu", "--no-progress", "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("wetok: error: ") and message in err and str(bad) in err
    assert not out.exists()


def test_missing_weights_and_bad_options(setup: dict[str, Path], homes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["gfid", str(setup["root"] / "samples.npz"), "--reference", str(setup["root"] / "ref.npz"), "--no-progress"]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and WEIGHTS_FILE in err and str(homes / "torch" / "hub" / "checkpoints") in err
    assert main([*args, "--output", str(homes)]) == 2
    assert "is a directory; --output names a file" in capsys.readouterr().err
    assert main([*args[:2], "--no-progress"]) == 2  # --reference is required
    assert "--reference" in capsys.readouterr().err
    assert main([*args, "--batch-size", "0"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "gfid" in capsys.readouterr().out
