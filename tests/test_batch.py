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


# ---- outputs never replace each other or an input (issue 17, #3) --------------------------------
def plan(inputs, output, *, accept=lambda p: p.suffix in (".png", ".jpg", ".webp"), suffix=".wtok", single_output=False):
    return plan_jobs([str(p) for p in inputs], str(output), accept=accept, target_suffix=suffix, single_output=single_output)


def test_two_inputs_of_one_name_are_refused_naming_both(tmp_path):
    a, b = touch(tmp_path / "a" / "x.png"), touch(tmp_path / "b" / "x.png")
    with pytest.raises(WetokError, match=r"out/x.wtok: both .*a/x.png and .*b/x.png would be written there"):
        plan([a, b], tmp_path / "out")
    c = touch(tmp_path / "c" / "x.webp")  # another suffix, the same output name
    with pytest.raises(WetokError, match=r"both .*a/x.png and .*c/x.webp"):
        plan([a, c], tmp_path / "out")


@pytest.mark.parametrize("names", [("x.png", "x.jpg"), ("x.png", "x.webp", "y.png"), ("sub/p.png", "sub/p.jpg"), ("X.png", "x.jpg")])
def test_one_folder_with_one_stem_in_two_formats_is_refused(tmp_path, names):
    for name in names:
        touch(tmp_path / "in" / name)
    with pytest.raises(WetokError, match=r"\.wtok: both .* and .* would be written there"):
        plan([tmp_path / "in"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any work


def test_token_files_of_one_stem_decode_to_one_picture_and_are_refused(tmp_path):
    a, b = touch(tmp_path / "t" / "a.wtok"), touch(tmp_path / "t" / "a.json")
    with pytest.raises(WetokError, match=r"a.png: both .*a.(json|wtok) and .*a.(json|wtok)"):
        plan([tmp_path / "t"], tmp_path / "pics", accept=lambda p: p.suffix in (".wtok", ".json"), suffix=".png")
    with pytest.raises(WetokError, match="both"):
        plan([a, b], tmp_path / "pics", accept=lambda p: True, suffix=".png")


def test_a_file_given_twice_is_refused(tmp_path):
    a = touch(tmp_path / "a.png")
    with pytest.raises(WetokError, match=r"a.png: given twice"):
        plan([a, tmp_path / "." / "a.png"], tmp_path / "out")
    (tmp_path / "sub").mkdir()
    with pytest.raises(WetokError, match=r"a.png: given twice"):
        plan([a, tmp_path / "sub" / ".." / "a.png"], tmp_path / "out")
    (tmp_path / "link.png").symlink_to(a)  # one file under two names: two outputs of two names, nothing replaced
    jobs, _, _ = plan([a, tmp_path / "link.png"], tmp_path / "out")
    assert [j.target.name for j in jobs] == ["a.wtok", "link.wtok"]


def test_an_output_that_is_an_input_is_refused(tmp_path):
    # reconstructing a folder into itself: a.jpg's picture would be a.png, another input; b.png's is b.png itself
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "in" / "a.png")
    with pytest.raises(WetokError, match=r"in/a.png: the output of .*in/a.jpg would replace the input .*in/a.png"):
        plan([tmp_path / "in"], tmp_path / "in", suffix=".png")
    touch(tmp_path / "in2" / "b.png")
    touch(tmp_path / "in2" / "c.png")
    with pytest.raises(WetokError, match=r"in2/b.png: output is the input file itself"):
        plan([tmp_path / "in2"], tmp_path / "in2", suffix=".png")
    x, y = touch(tmp_path / "x.png"), touch(tmp_path / "d" / "x.wtok")
    with pytest.raises(WetokError, match=r"d/x.wtok: the output of .*x.png would replace the input .*d/x.wtok"):
        plan([x, y], tmp_path / "d", accept=lambda p: True)


def test_packed_outputs_share_their_target_but_never_an_input(tmp_path):
    a, b = touch(tmp_path / "a" / "x.png"), touch(tmp_path / "b" / "x.png")
    jobs, _, _ = plan([a, b], tmp_path / "all.wtok", single_output=True)
    assert [j.target for j in jobs] == [tmp_path / "all.wtok"] * 2 and all(j.shared for j in jobs)
    with pytest.raises(WetokError, match="would replace the input"):
        plan([a, b], b, single_output=True)


def test_distinct_names_are_fine_and_the_mirrored_layout_is_kept(tmp_path):
    files = [touch(tmp_path / "in" / name) for name in ("x.png", "sub/x.jpg", "y.webp", "xx.png")]
    jobs, _, _ = plan([tmp_path / "in"], tmp_path / "out")
    assert sorted(j.target.relative_to(tmp_path / "out").as_posix() for j in jobs) == ["sub/x.wtok", "x.wtok", "xx.wtok", "y.wtok"]
    assert sorted(j.source for j in jobs) == sorted(files)


def test_outputs_known_only_when_read_never_replace_an_earlier_one(tmp_path):
    """A token file of 2 images writes a_0000.png and a_0001.png; a_0000.wtok of the same run would
    write a_0000.png too: the later one is skipped with its reason, not written over the first."""
    out = tmp_path / "out"
    jobs = [Job(Path("a.wtok"), out / "a.png"), Job(Path("a_0000.wtok"), out / "a_0000.png"), Job(Path("b.wtok"), out / "b.png")]
    written: list[str] = []

    def load(job: Job, index: int) -> list[Item]:
        if job.source.name == "a.wtok":
            return [Item(job.source, out / f"a_{i:04d}.png", "k", i, index + i) for i in range(2)]
        return [Item(job.source, job.target, "k", 0, index)]

    def process(items: list[Item]) -> list[BaseException | None]:
        written.extend(it.target.name for it in items)
        return [None] * len(items)

    summary = run(jobs, load=load, process=process, batch_size=8, total=3, single=False, progress=False)
    assert written == ["a_0000.png", "a_0001.png", "b.png"]
    assert summary.done == 3 and len(summary.skipped) == 1
    assert summary.skipped[0][1] == f"{out / 'a_0000.png'}: already the output of a.wtok in this run; a_0000.wtok would replace it"
    with pytest.raises(WetokError, match="already the output of a.wtok"):
        run(jobs[:2], load=load, process=process, batch_size=8, total=2, single=True, progress=False)


def test_an_output_known_when_read_that_is_an_input_is_skipped(tmp_path):
    jobs = [Job(tmp_path / "a.wtok", tmp_path / "a.png"), Job(tmp_path / "a_0001.png", tmp_path / "other.png")]

    def load(job: Job, index: int) -> list[Item]:
        if job.source.name == "a.wtok":
            return [Item(job.source, tmp_path / f"a_{i:04d}.png", "k", i, index + i) for i in range(2)]
        return [Item(job.source, job.target, "k", 0, index)]

    summary = run(jobs, load=load, process=lambda items: [None] * len(items), batch_size=8, total=2, single=False, progress=False)
    assert summary.done == 1 and "a_0001.png: the output of" in summary.skipped[0][1] and "would replace the input" in summary.skipped[0][1]


def test_shared_targets_gather_every_item(tmp_path):
    jobs = [Job(Path(f"{n}.png"), tmp_path / "all.wtok", shared=True) for n in "abc"]
    summary = run(jobs, load=lambda job, i: [Item(job.source, job.target, "k", 0, i)], process=lambda items: [None] * len(items),
                  batch_size=2, total=3, single=False, progress=False)
    assert summary.done == 3 and not summary.skipped


# ---- deep folders, non-regular files (#9, #12) ----------------------------------------------------
def test_plan_jobs_walks_a_folder_1200_levels_deep(tmp_path):
    from test_images import deep_chain, remove_chain

    (tmp_path / "in").mkdir()
    folders = deep_chain(tmp_path / "in", 1200)
    try:
        deep = touch(folders[-1] / "deep.png")
        touch(folders[10] / "notes.txt")
        jobs, ignored, single = plan([tmp_path / "in"], tmp_path / "out")
        assert ignored == 1 and not single
        assert jobs == [Job(deep, (tmp_path / "out" / deep.relative_to(tmp_path / "in")).with_suffix(".wtok"))]
    finally:
        remove_chain(folders)


def test_special_files_in_a_folder_are_jobs_refused_by_name(tmp_path):
    import os

    from wetok.batch import check_target

    touch(tmp_path / "in" / "a.png")
    os.mkfifo(tmp_path / "in" / "pipe.png")
    os.mkfifo(tmp_path / "in" / "pipe.txt")
    jobs, ignored, _ = plan([tmp_path / "in"], tmp_path / "out")
    assert [j.source.name for j in jobs] == ["a.png", "pipe.png"] and ignored == 1
    check_target(jobs[0])
    with pytest.raises(WetokError, match=r"pipe.png: is a named pipe \(FIFO\), not an input file"):
        check_target(jobs[1])
    if os.path.exists("/dev/zero"):
        with pytest.raises(WetokError, match="/dev/zero: is a character device"):
            check_target(Job(Path("/dev/zero"), tmp_path / "zero.png"))


def test_a_folder_that_cannot_be_listed_is_named(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root lists every folder")
    touch(tmp_path / "in" / "a.png")
    locked = tmp_path / "in" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(WetokError, match="locked: cannot list the folder"):
            plan([tmp_path / "in"], tmp_path / "out")
    finally:
        locked.chmod(0o755)
