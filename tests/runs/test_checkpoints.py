"""Training checkpoints: atomic files, pruning, the two trainers' formats, a full disk, the
choice of the checkpoint a run resumes from, and every rank's RNG state."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest
import torch

from wetok.errors import CheckpointError, WetokError
from wetok.runs import checkpoints
from wetok.runs.checkpoints import (
    AR_TRAIN_FORMAT,
    CheckpointWriteError,
    is_training_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    resolve_resume,
    restore_rng,
    rng_states,
    save_checkpoint,
    set_aside_newer,
)


def test_checkpoint_files_are_atomic(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".step-00000009.pt.abc.tmp").write_bytes(b"half a file")  # a writer killed mid-way
    (folder / "step-00000009.pt").write_bytes(b"corrupt")  # a damaged newest checkpoint
    save_checkpoint(tmp_path, 3, {"x": torch.ones(2)}, keep=5)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000003.pt", "step-00000009.pt"]
    path, state = latest_checkpoint(tmp_path)
    assert path.name == "step-00000003.pt" and torch.equal(state["x"], torch.ones(2))
    assert (state["format"], state["version"], state["step"]) == ("wetok-train", 1, 3)
    assert [p.name for p in set_aside_newer(tmp_path, 3)] == ["step-00000009.pt.unreadable"]
    for step in (4, 5, 6):
        save_checkpoint(tmp_path, step, {}, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000005.pt", "step-00000006.pt", "step-00000009.pt.unreadable"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [5, 6]


def test_each_trainer_reads_its_own_format_only(tmp_path):
    tokenizer, generator = tmp_path / "tokenizer", tmp_path / "generator"
    save_checkpoint(tokenizer, 1, {"x": torch.zeros(1)}, keep=1)
    path = save_checkpoint(generator, 2, {"x": torch.ones(1)}, keep=1, format=AR_TRAIN_FORMAT)
    state = read_checkpoint(path, format=AR_TRAIN_FORMAT)
    assert (state["format"], state["step"]) == ("wetok-ar-train", 2) and torch.equal(state["x"], torch.ones(1))
    assert is_training_checkpoint(state, AR_TRAIN_FORMAT) and not is_training_checkpoint(state)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path}: a wetok generator training checkpoint (wetok-ar-train), not a wetok training checkpoint"
    with pytest.raises(CheckpointError, match="no readable checkpoint in .*not a wetok generator training checkpoint$"):
        latest_checkpoint(tokenizer, format=AR_TRAIN_FORMAT)
    plain = tmp_path / "plain.pt"
    torch.save({"model": {}}, plain)
    with pytest.raises(CheckpointError, match=r"plain.pt: not a wetok training checkpoint$"):
        read_checkpoint(plain)
    torch.save({"format": "wetok-train", "version": 2, "step": 1}, plain)
    with pytest.raises(CheckpointError, match=r"plain.pt: written by a newer wetok \(training format 2\)$"):
        read_checkpoint(plain)
    with pytest.raises(ValueError, match="unknown checkpoint format 'wetok-gan'"):
        save_checkpoint(tmp_path, 1, {}, keep=1, format="wetok-gan")


class _FullDisk:
    """A binary file that takes `room` bytes and then fails as a full disk does."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.parametrize("room", [0, 5000])
def test_a_full_disk_while_writing_a_checkpoint_is_one_error_and_keeps_the_older_ones(tmp_path, monkeypatch, room):
    save_checkpoint(tmp_path, 2, {"x": torch.ones(3)}, keep=1)
    real_open = pathlib.Path.open
    monkeypatch.setattr(pathlib.Path, "open", lambda self, mode="r", *a, **k: _FullDisk(real_open(self, mode, *a, **k), room))
    with pytest.raises(CheckpointWriteError) as caught:
        save_checkpoint(tmp_path, 4, {"x": torch.randn(10000)}, keep=1)
    assert str(caught.value) == f"{tmp_path / 'checkpoints' / 'step-00000004.pt'}: cannot write checkpoint: No space left on device"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002.pt"]  # no temporary file, nothing pruned
    monkeypatch.undo()

    def zip_writer_fails(*args, **kwargs):  # torch's own message when the cause is unknown
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534\nframe #0: ...")

    monkeypatch.setattr(checkpoints.torch, "save", zip_writer_fails)
    with pytest.raises(CheckpointWriteError, match=r"step-00000004.pt: cannot write checkpoint: \[enforce fail at inline_container.cc:672\] . unexpected pos 576 vs 534$"):
        save_checkpoint(tmp_path, 4, {}, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002.pt"]


def test_resolve_resume_chooses_the_checkpoint_to_continue(tmp_path, capsys, one_process):
    run = tmp_path / "run"
    assert resolve_resume(run, False, one_process, command="wetok train") is None  # fresh
    assert resolve_resume(run, "auto", one_process, command="wetok train") is None  # a restart before any checkpoint
    with pytest.raises(WetokError) as caught:
        resolve_resume(run, True, one_process, command="wetok train")
    assert str(caught.value) == f"--resume: no checkpoint in {run / 'checkpoints'}"
    save_checkpoint(run, 2, {"x": torch.ones(1)}, keep=3, format=AR_TRAIN_FORMAT)
    save_checkpoint(run, 3, {"x": torch.ones(1)}, keep=3, format=AR_TRAIN_FORMAT)
    (run / "checkpoints" / "step-00000004.pt").write_bytes(b"cut short")
    with pytest.raises(WetokError, match="already holds a run's checkpoints: pass --resume to continue it, or choose another --output"):
        resolve_resume(run, False, one_process, command="wetok train-ar", format=AR_TRAIN_FORMAT)
    capsys.readouterr()
    for resume in (True, "auto"):
        state = resolve_resume(run, resume, one_process, command="wetok train-ar", format=AR_TRAIN_FORMAT)
        assert state["step"] == 3
    assert capsys.readouterr().out == f"wetok train-ar: unreadable checkpoint set aside as {run / 'checkpoints' / 'step-00000004.pt.unreadable'}\n"
    with pytest.raises(CheckpointError, match="not a wetok training checkpoint"):  # the tokenizer's trainer refuses them
        resolve_resume(run, True, one_process, command="wetok train")


def test_rng_states_restore_the_global_stream(one_process):
    torch.manual_seed(7)
    states = rng_states(one_process)
    assert len(states) == 1 and set(states[0]) == {"cpu"}
    expected = torch.rand(3)
    assert restore_rng(states, one_process)
    assert torch.equal(torch.rand(3), expected)
    before = torch.get_rng_state()
    assert not restore_rng(states * 2, one_process)  # written by two processes: left as it is
    assert torch.equal(torch.get_rng_state(), before)
