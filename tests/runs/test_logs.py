"""A run's logs: its config.yaml, JSON lines, TensorBoard scalars and images, PNG grids, what a resumed run
drops, and the one-line errors of writes that fail (TensorBoard's included)."""

from __future__ import annotations

import json
import resource
import sys
import threading
import types

import numpy as np
import pytest
from PIL import Image

from wetok.errors import WetokError
from wetok.runs.logs import EVAL_FILE, METRICS_FILE, RunLog, write_run_config


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tensorboard_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "logs"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_a_run_log_writes_json_lines_tensorboard_and_png_grids(tmp_path):
    log = RunLog(tmp_path, None, command="wetok train")
    log.scalars(1, {"train/l1": 0.5, "lr": 1e-4})
    log.scalars(2, {"train/l1": 0.25, "lr": 1e-4})
    log.evaluation(2, {"psnr": 20.5})
    grid = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    path = log.image(2, "samples", grid)
    log.close()
    assert lines(tmp_path / METRICS_FILE) == [{"step": 1, "train/l1": 0.5, "lr": 1e-4}, {"step": 2, "train/l1": 0.25, "lr": 1e-4}]
    assert lines(tmp_path / EVAL_FILE) == [{"step": 2, "psnr": 20.5}]
    assert path == tmp_path / "samples" / "step-00000002.png"
    assert np.array_equal(np.asarray(Image.open(path)), grid)  # lossless, pixel for pixel
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically: no temporary file left
    events = tensorboard_events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("train/l1")] == [(1, 0.5), (2, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("eval/psnr")] == [(2, 20.5)]
    assert [(e.step, e.width, e.height) for e in events.Images("samples")] == [(2, 12, 8)]
    other = RunLog(tmp_path / "other", None, command="wetok train")
    with pytest.raises(ValueError, match=r"an image grid is uint8 \(H, W, 3\), got float32 \(8, 12, 3\)"):
        other.image(1, "samples", grid.astype(np.float32))
    other.close()


def test_a_resumed_run_drops_what_was_logged_after_its_checkpoint(tmp_path):
    log = RunLog(tmp_path, None, command="wetok train")
    for step in (1, 2, 3):
        log.scalars(step, {"loss": float(step)})
    log.close()
    with (tmp_path / METRICS_FILE).open("a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut short by a kill
    (tmp_path / EVAL_FILE).write_text('{"step": 2, "psnr": 10.0}\n{"step": 3, "psnr": 11.0}\n')
    log = RunLog(tmp_path, 2, command="wetok train")
    assert lines(tmp_path / METRICS_FILE) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    assert lines(tmp_path / EVAL_FILE) == [{"step": 2, "psnr": 10.0}]
    log.scalars(3, {"loss": 30.0})
    log.close()
    assert [(e.step, e.value) for e in tensorboard_events(tmp_path).Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    RunLog(tmp_path / "fresh", 0, command="wetok train").close()  # a torchrun restart before the first checkpoint
    assert not (tmp_path / "fresh" / METRICS_FILE).exists()


def test_without_tensorboard_the_rest_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an environment without the package sees
    log = RunLog(tmp_path, None, command="wetok train-ar")
    assert capsys.readouterr().out == "wetok train-ar: the tensorboard package is missing: no TensorBoard logs (pip install tensorboard)\n"
    log.scalars(1, {"loss": 1.0})
    log.image(1, "samples", np.zeros((2, 2, 3), np.uint8))
    log.close()
    assert lines(tmp_path / METRICS_FILE) == [{"step": 1, "loss": 1.0}]
    assert (tmp_path / "samples" / "step-00000001.png").is_file() and not (tmp_path / "logs").exists()


def test_a_logs_path_that_cannot_be_a_folder_is_one_line(tmp_path):
    (tmp_path / "logs").write_text("not a folder")
    with pytest.raises(WetokError) as caught:
        RunLog(tmp_path, None, command="wetok train")
    assert str(caught.value) == f"{tmp_path / 'logs'}: cannot write the TensorBoard logs: File exists"


def test_a_file_size_limit_while_writing_tensorboard_events_is_one_line(tmp_path, monkeypatch):
    """The events are written by TensorBoard's own thread: its failure comes back as one line
    from the writer's next call, and the thread's traceback is not printed (the hook that prints
    uncaught thread errors does not see it)."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    seen = []
    monkeypatch.setattr(threading, "excepthook", seen.append)  # where Python prints a thread's traceback
    before = set(threading.enumerate())
    log = RunLog(tmp_path, None, command="wetok train")
    (writer,) = [t for t in set(threading.enumerate()) - before if isinstance(t, _AsyncWriterThread)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # above a few lines of metrics.jsonl, below the events
    try:
        with pytest.raises(WetokError) as caught:
            for step in range(1, 20):
                log.scalars(step, {f"value{i}": float(i) for i in range(100)})
            log.close()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(caught.value) == f"{tmp_path / 'logs'}: cannot write the TensorBoard logs: File too large"
    writer.join(timeout=30)
    assert not writer.is_alive() and seen == []
    threading.excepthook(types.SimpleNamespace(thread=None, exc_type=ValueError, exc_value=ValueError("x"), exc_traceback=None))
    assert [type(args.exc_value) for args in seen] == [ValueError]  # other threads' errors are printed as before


def test_a_grid_that_cannot_be_written_is_one_line(tmp_path):
    log = RunLog(tmp_path, None, command="wetok train")
    (tmp_path / "samples").write_text("not a folder")
    with pytest.raises(WetokError) as caught:
        log.image(5, "samples", np.zeros((2, 2, 3), np.uint8))
    assert str(caught.value) == f"{tmp_path / 'samples' / 'step-00000005.png'}: cannot write: File exists"
    log.close()


def test_the_run_config_is_written_atomically_and_its_failures_are_one_line(tmp_path):
    path = write_run_config(tmp_path / "a" / "run", "optim:\n  lr: 0.001\n")
    assert path == tmp_path / "a" / "run" / "config.yaml" and path.read_text() == "optim:\n  lr: 0.001\n"
    write_run_config(tmp_path / "a" / "run", "seed: 1\n")  # replaced whole, no temporary file left
    assert path.read_text() == "seed: 1\n" and [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    (tmp_path / "file").write_text("")
    with pytest.raises(WetokError) as caught:
        write_run_config(tmp_path / "file" / "run", "seed: 1\n")
    assert str(caught.value) == f"{tmp_path / 'file' / 'run'}: cannot create the run directory (Not a directory)"
    (tmp_path / "b" / "config.yaml").mkdir(parents=True)
    with pytest.raises(WetokError) as caught:
        write_run_config(tmp_path / "b", "seed: 1\n")
    assert str(caught.value) == f"{tmp_path / 'b' / 'config.yaml'}: cannot write: Is a directory"
