"""benchmarks/gq_cost.py measures the quantizer's step at a tiny size with sane numbers, fits
lines exactly, draws its plot and refuses bad input in one line."""

from __future__ import annotations

import runpy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from support import REPO
from wetok.errors import WetokError

GQ_COST = runpy.run_path(str(REPO / "benchmarks" / "gq_cost.py"), run_name="gq_cost")
Case, Measurement = GQ_COST["Case"], GQ_COST["Measurement"]
POSITIONS = 16


@pytest.fixture(scope="module")
def measured() -> dict:
    """Two cases at 16 positions, 32 bits in 4 groups of 8 and one group of 16 bits: peak memory
    each in its own process (both at once, to keep the test short), times in this one."""
    cases = [Case(32, 4), Case(16, 1)]
    with ThreadPoolExecutor(len(cases)) as pool:
        peaks = list(pool.map(lambda c: GQ_COST["peak_memory_isolated"](c, POSITIONS, "cpu", 1), cases))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark's figures are taken; more threads on a busy machine only add noise
    try:
        seconds = GQ_COST["step_seconds"](cases, POSITIONS, 2, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return {c: Measurement(c, POSITIONS, t, p) for c, t, p in zip(cases, seconds, peaks, strict=True)}


def test_times_are_positive_and_grow_with_the_codebook(measured):
    gq, lfq = measured[Case(32, 4)], measured[Case(16, 1)]
    for m in measured.values():
        assert m.positions == POSITIONS
        assert 0 < m.seconds < 10
    # 2**16 codes per position against 4 * 2**8: 64 times the work.
    assert lfq.seconds > 5 * gq.seconds


def test_peak_memory_grows_with_the_codebook(measured):
    gq, lfq = measured[Case(32, 4)], measured[Case(16, 1)]
    # At least logits, probabilities and log-probabilities of the 2**16 codes held at once
    # (float32), and within the benchmark's own upper bound; the groups' 4 * 2**8 codes need
    # about 1/64 of that.
    codes = POSITIONS * 2**16
    assert 3 * 4 * codes <= lfq.peak_bytes <= GQ_COST["estimated_peak_bytes"](Case(16, 1), POSITIONS)
    assert 0 <= gq.peak_bytes < lfq.peak_bytes / 8


def test_the_fits_recover_lines():
    fit = GQ_COST["linear_fit"]([1, 2, 4, 8], [3.5, 5.0, 8.0, 14.0])
    assert fit.slope == pytest.approx(1.5) and fit.intercept == pytest.approx(2.0) and fit.r2 == pytest.approx(1.0)
    noisy = GQ_COST["linear_fit"]([1, 2, 3, 4], [1.0, 3.0, 2.0, 4.0])
    assert noisy.slope == pytest.approx(0.8) and noisy.r2 == pytest.approx(0.64)
    results = [Measurement(Case(8 * g, g), 256, 0.002 + 0.001 * g, 1_000_000 * g) for g in (1, 2, 4, 8)]
    results += [Measurement(Case(b, 1), 256, 0.01 * 2 ** (b - 12), 10_000 * 2**b) for b in (12, 14, 16)]
    seconds, memory = GQ_COST["group_fits"](results)
    assert seconds.slope == pytest.approx(0.001) and seconds.intercept == pytest.approx(0.002)
    assert memory.slope == pytest.approx(1e6) and memory.r2 == pytest.approx(1.0)
    assert GQ_COST["codebook_fit"](results).slope == pytest.approx(1.0)
    table = GQ_COST["report"](results)
    assert "1.000 ms per group + 2 ms, R^2 = 1.0000" in table
    assert "log2(time) against bits: slope 1.000" in table
    assert "| LFQ | 16 | 1 | 16 | 65,536 | 160.0 ms | 625.0 MiB |" in table



def test_the_plot_is_written_whole(tmp_path):
    results = [Measurement(Case(8 * g, g), 256, 0.002 + 0.001 * g, 1_000_000 * g) for g in (1, 2, 4, 8)]
    results += [Measurement(Case(64, 4), 256, 3.0, 500_000_000), Measurement(Case(20, 1), 256, 30.0, 6_000_000_000)]
    GQ_COST["write_plot"](results, tmp_path / "plot.png", "caption")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    image = np.asarray(Image.open(tmp_path / "plot.png").convert("RGB"))
    assert image.shape == (1000, 1300, 3)
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert set(GQ_COST["SERIES_COLOURS"].values()) <= colours, "every series is drawn"
    with pytest.raises(WetokError, match="at least two cases of 8-bit groups"):
        GQ_COST["write_plot"](results[-2:], tmp_path / "other.png", "caption")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(WetokError, match="do not split into 3 groups"):
        GQ_COST["check_case"](Case(16, 3))
    with pytest.raises(WetokError, match="at most 24"):
        GQ_COST["check_case"](Case(25, 1))
    main = GQ_COST["main"]
    plot = tmp_path / "plot.png"
    assert main(["--split-bits", "3", "--plot", str(plot)]) == 1
    assert main(["--positions", "100000000", "--plot", str(plot)]) == 1
    assert main(["--positions", "0"]) == 1
    assert main(["--plot", str(tmp_path / "missing" / "plot.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("gq_cost: ") for line in err)
    assert "does not divide 64" in err[0] and "GiB free; lower --positions" in err[1]
    assert list(tmp_path.iterdir()) == []
