"""Sampling runs: the ADM .npz layout, PNG folders, resuming after an interruption (the result
equals an uninterrupted run), and the settings recorded and checked."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import listing, make_generator
from wetok.ar import run as run_module
from wetok.ar.npz import write_npz
from wetok.ar.run import SamplePlan, parse_classes, run
from wetok.ar.sampling import SamplingSettings
from wetok.distributed import Distributed
from wetok.errors import WetokError

ONE = Distributed(rank=0, world=1, local_rank=0, device=__import__("torch").device("cpu"))
RECORD = {"ckpt": "test"}


@pytest.fixture(scope="module")
def model():
    return make_generator(generative=True)


def _plan(**changes) -> SamplePlan:
    settings = SamplingSettings.of(2, cfg_scale=[1.5, 2.0], top_k=[0, 6], top_p=0.9)
    return SamplePlan(**{"classes": (4, 0, 2), "per_class": 3, "settings": settings, "seed": 11, **changes})


def test_an_npz_run_writes_the_adm_layout_and_equals_a_png_run(tmp_path: Path, model):
    out = run(model, _plan(), tmp_path / "s.npz", batch_size=4, model_record=RECORD, info=ONE, progress=False)
    assert out == tmp_path / "s.npz"
    assert listing(tmp_path) == ["s.json", "s.npz", "s.png"]
    with np.load(out, allow_pickle=False) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.shape == (9, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [4, 4, 4, 0, 0, 0, 2, 2, 2] and labels.dtype == np.int64
    assert len({im.tobytes() for im in images}) == 9 and images.std() > 10
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["sampling"]["cfg_scale"] == [1.5, 2.0] and record["images"] == 9 and record["seed"] == 11

    folder = run(model, _plan(), tmp_path / "png", batch_size=2, model_record=RECORD, info=ONE, progress=False)
    pngs = sorted(p for p in folder.rglob("*.png") if p.name != "grid.png")
    assert [p.parent.name for p in pngs] == ["0000"] * 3 + ["0002"] * 3 + ["0004"] * 3
    by_index = {int(p.stem): np.asarray(Image.open(p)) for p in pngs}
    assert all(np.array_equal(by_index[i], images[i]) for i in range(9))  # other batch size, same images
    assert (folder / "sampling.json").is_file() and (folder / "grid.png").is_file()


def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(tmp_path: Path, model, monkeypatch):
    whole = run(model, _plan(), tmp_path / "whole.npz", batch_size=2, model_record=RECORD, info=ONE, progress=False)
    calls = {"n": 0}
    real = run_module.generate

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "generate", stopping)
    target = tmp_path / "part.npz"
    with pytest.raises(KeyboardInterrupt):
        run(model, _plan(), target, batch_size=2, model_record=RECORD, info=ONE, progress=False)
    assert not target.exists()
    parts = sorted(p.name for p in (tmp_path / "part.npz.partial").glob("*.npz"))
    assert parts == ["00000000-00000002.npz", "00000002-00000004.npz"]
    monkeypatch.setattr(run_module, "generate", real)
    run(model, _plan(), target, batch_size=4, model_record=RECORD, info=ONE, progress=False)  # another batch size
    assert not (tmp_path / "part.npz.partial").exists()
    with np.load(whole) as a, np.load(target) as b:
        assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["arr_1"], b["arr_1"])
    # a finished run asked again: nothing to do
    before = target.stat().st_mtime_ns
    run(model, _plan(), target, batch_size=4, model_record=RECORD, info=ONE, progress=False)
    assert target.stat().st_mtime_ns == before


def test_other_settings_do_not_resume_a_run(tmp_path: Path, model, monkeypatch):
    run(model, _plan(), tmp_path / "a.npz", batch_size=4, model_record=RECORD, info=ONE, progress=False)
    with pytest.raises(WetokError, match=r"other settings \(seed\)"):
        run(model, _plan(seed=12), tmp_path / "a.npz", batch_size=4, model_record=RECORD, info=ONE, progress=False)
    (tmp_path / "b.npz").write_bytes(b"someone else's")
    with pytest.raises(WetokError, match="not written by wetok sample"):
        run(model, _plan(), tmp_path / "b.npz", batch_size=4, model_record=RECORD, info=ONE, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(WetokError, match="holds other files"):
        run(model, _plan(), tmp_path / "busy", batch_size=4, model_record=RECORD, info=ONE, progress=False)
    assert listing(tmp_path / "busy") == ["notes.txt"]


def test_write_npz_streams_chunks_into_a_file_numpy_reads(tmp_path: Path):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (n, 8, 6, 3), dtype=np.uint8) for n in (3, 1, 4)]
    write_npz(tmp_path / "x.npz", (8, 8, 6, 3), iter(chunks), np.arange(8))
    with np.load(tmp_path / "x.npz", allow_pickle=False) as data:
        assert np.array_equal(data["arr_0"], np.concatenate(chunks)) and data["arr_1"].tolist() == list(range(8))
    with zipfile.ZipFile(tmp_path / "x.npz") as archive:
        assert [i.compress_type for i in archive.infolist()] == [zipfile.ZIP_STORED] * 2
    with pytest.raises(ValueError, match="7 images written"):
        write_npz(tmp_path / "y.npz", (8, 8, 6, 3), iter([chunks[0], chunks[1], chunks[0]]), np.arange(8))
    assert not (tmp_path / "y.npz").exists() and listing(tmp_path) == ["x.npz"]


def test_parse_classes():
    assert parse_classes("all", 4) == (0, 1, 2, 3)
    assert parse_classes("3, 0-1", 10) == (3, 0, 1)
    for bad, message in [("10", "outside"), ("a", "not a label"), ("1,1", "twice"), ("5-2", "outside")]:
        with pytest.raises(WetokError, match=message):
            parse_classes(bad, 10)
