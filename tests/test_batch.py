"""The many-files driver: input/output mapping, batching by key, skipping, the summary line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wetok.batch import Item, Job, Summary, plan_jobs, run
from wetok.errors import WetokError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def is_png(path: Path) -> bool:
    return path.suffix == ".png"


def test_single_file_maps_to_the_output_file(tmp_path):
    src = touch(tmp_path / "a.png")
    jobs, ignored, single = plan_jobs([str(src)], str(tmp_path / "out.wtok"), accept=is_png, target_suffix=".wtok", single_output=False)
    assert (jobs, ignored, single) == ([Job(src, tmp_path / "out.wtok")], 0, True)
    # An existing directory, or a trailing slash, makes the output a directory.
    (tmp_path / "d").mkdir()
    jobs, _, single = plan_jobs([str(src)], str(tmp_path / "d"), accept=is_png, target_suffix=".wtok", single_output=False)
    assert jobs == [Job(src, tmp_path / "d" / "a.wtok")] and single  # one input: its failure is an error
    jobs, _, _ = plan_jobs([str(src)], str(tmp_path / "e") + "/", accept=is_png, target_suffix=".wtok", single_output=False)
    assert jobs == [Job(src, tmp_path / "e" / "a.wtok")]


def test_directories_are_mirrored_recursively(tmp_path):
    a = touch(tmp_path / "in" / "a.png")
    b = touch(tmp_path / "in" / "x" / "y" / "b.png")
    touch(tmp_path / "in" / "x" / "notes.txt")
    c = touch(tmp_path / "other" / "c.png")
    jobs, ignored, single = plan_jobs(
        [str(tmp_path / "in"), str(c)], str(tmp_path / "out"), accept=is_png, target_suffix=".json", single_output=False
    )
    assert not single and ignored == 1
    assert jobs == [
        Job(a, tmp_path / "out" / "a.json"),
        Job(b, tmp_path / "out" / "x" / "y" / "b.json"),
        Job(c, tmp_path / "out" / "c.json"),
    ]


def test_several_inputs_need_a_directory_output(tmp_path):
    a, b = touch(tmp_path / "a.png"), touch(tmp_path / "b.png")
    touch(tmp_path / "file.out")
    with pytest.raises(WetokError, match="file.out: exists and is not a directory"):
        plan_jobs([str(a), str(b)], str(tmp_path / "file.out"), accept=is_png, target_suffix=".x", single_output=False)
    jobs, _, _ = plan_jobs([str(a), str(b)], str(tmp_path / "all.wtok"), accept=is_png, target_suffix=".x", single_output=True)
    assert [j.target for j in jobs] == [tmp_path / "all.wtok"] * 2
    with pytest.raises(WetokError, match="no input"):
        plan_jobs([], "x", accept=is_png, target_suffix=".x", single_output=False)


def test_run_batches_by_key_skips_failures_and_summarises(tmp_path):
    jobs = [Job(Path(f"{name}.png"), Path(f"{name}.out")) for name in ["a1", "b1", "a2", "bad", "a3", "b2", "write-fails"]]
    batches: list[list[str]] = []

    def load(job: Job, index: int) -> list[Item]:
        name = job.source.stem
        if name == "bad":
            raise WetokError(f"{job.source}: not an image")
        return [Item(job.source, job.target, name[0], name)]

    def process(items: list[Item]) -> list[BaseException | None]:
        batches.append([it.payload for it in items])
        return [OSError(28, "No space left on device", str(it.target)) if it.payload == "write-fails" else None for it in items]

    summary = run(jobs, load=load, process=process, batch_size=2, total=len(jobs), single=False, progress=False)
    assert batches == [["a1", "a2"], ["b1", "b2"], ["a3"], ["write-fails"]]
    assert summary.done == 5
    assert summary.skipped == [("bad.png", "bad.png: not an image"), ("write-fails.png", "write-fails.out: cannot write: No space left on device")]
    assert summary.exit_code == 1
    assert summary.line("encoded") == (
        "wetok: encoded 5 images, skipped 2 (bad.png: not an image; write-fails.out: cannot write: No space left on device)"
    )


def test_single_file_failures_are_raised(tmp_path):
    def load(job: Job, index: int) -> list[Item]:
        raise WetokError("x.png: empty file")

    with pytest.raises(WetokError, match="empty file"):
        run([Job(Path("x.png"), Path("x.out"))], load=load, process=lambda items: [], batch_size=1, total=1, single=True, progress=False)


def test_summary_exit_codes_and_long_lists():
    assert Summary(done=3).exit_code == 0
    assert Summary(done=0, skipped=[("a", "a: bad")]).exit_code == 2
    many = Summary(done=1, skipped=[(str(i), f"{i}: bad") for i in range(7)], ignored=2)
    assert many.line("decoded") == "wetok: decoded 1 image, skipped 7 (0: bad; 1: bad; 2: bad; 3: bad; 4: bad; and 2 more), ignored 2 other files"


def test_an_empty_directory_is_an_error(tmp_path):
    touch(tmp_path / "in" / "notes.txt")
    with pytest.raises(WetokError, match=r"no input files found in .*in \(1 other files ignored\)"):
        plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), accept=is_png, target_suffix=".x", single_output=False)
