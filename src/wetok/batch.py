"""Running encode / decode / reconstruct over many files.

Inputs are files or directories (searched recursively); outputs mirror the inputs' layout under
the output directory. Items are grouped by size into batches; a file that cannot be read or
written is skipped with its reason and the rest go on. A progress bar (images/s) runs on a
terminal; a summary line ends the run.

One input file with one output file is the single-file case: its failure is an error (raised),
not a skip.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WetokError
from .files import require_regular_file, walk_files


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes; `shared` when every job of the run gathers
    into this one target (a packed `.wtok`), else no two items of a run may have one target."""

    source: Path
    target: Path
    shared: bool = False


@dataclass
class Item:
    """One image's worth of work: from `source`, written to `target`; `key` groups items that can
    share a batch (same size, same model); `payload` is what the processing step needs; `index`
    is the image's place in the run (input order), which seeds its generative-decoder noise."""

    source: Path
    target: Path
    key: Hashable
    payload: Any
    index: int = 0


@dataclass
class Summary:
    """What a run did."""

    done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0

    def line(self, verb: str) -> str:
        """`wetok: encoded 12 images, skipped 2 (a.jpg: truncated ...; b.png: ...)`."""
        text = f"wetok: {verb} {self.done} image{'s' if self.done != 1 else ''}"
        if self.skipped:
            reasons = "; ".join(reason for _, reason in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            text += f", skipped {len(self.skipped)} ({reasons}{more})"
        if self.ignored:
            text += f", ignored {self.ignored} other file{'s' if self.ignored != 1 else ''}"
        return text

    @property
    def exit_code(self) -> int:
        """0 when everything was done, 1 when something was skipped, 2 when nothing was done."""
        if not self.skipped:
            return 0
        return 1 if self.done else 2


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def path_key(path: Path) -> str:
    """What makes two paths one file for the collision checks: the absolute path with symbolic
    links resolved (as far as it exists), `os.path.normcase`d and case-folded, so that names
    differing only in case count as one (they are one file on case-insensitive file systems)."""
    try:
        resolved = os.path.realpath(path)
    except (OSError, ValueError):
        resolved = os.path.abspath(path)
    return os.path.normcase(resolved).casefold()


def check_collisions(jobs: list[Job]) -> None:
    """Refuse, before any work, a run in which an output would replace another output of the run
    or one of its inputs: two jobs with one target (`a/x.png b/x.png -o out`, or `x.png` and
    `x.jpg` in one folder, or `a.wtok` and `a.json`, or one file given twice), or a target that is
    one of the inputs. Jobs that share their target on purpose (`Job.shared`) are exempt from
    the first rule. Raises `WetokError` naming both files."""
    sources = {path_key(job.source): job.source for job in jobs}
    claimed: dict[str, Job] = {}
    for job in jobs:
        key = path_key(job.target)
        if key == path_key(job.source):
            raise WetokError(f"{job.target}: output is the input file itself; choose another output path")
        if key in sources:
            raise WetokError(
                f"{job.target}: the output of {job.source} would replace the input {sources[key]}; choose another output"
            )
        first = claimed.get(key)
        if first is not None and not (job.shared and first.shared):
            if path_key(first.source) == path_key(job.source):
                raise WetokError(f"{job.source}: given twice (also as {first.source}); each input once")
            raise WetokError(
                f"{job.target}: both {first.source} and {job.source} would be written there (one would replace the "
                "other); rename one of them or run them into different output folders"
            )
        claimed.setdefault(key, job)


def plan_jobs(
    inputs: list[str],
    output: str,
    *,
    accept: Callable[[Path], bool],
    target_suffix: str,
    single_output: bool,
) -> tuple[list[Job], int, bool]:
    """Map inputs to outputs.

    Args:
        inputs: files and directories (directories searched recursively for files `accept` takes).
        output: the output file (one input file) or directory (mirrored layout).
        accept: which files of a directory to take (by suffix).
        target_suffix: the outputs' suffix when `output` is a directory.
        single_output: True when the output is one file that gathers every input (a packed
            `.wtok`): every job then targets `output`.

    Directories are walked with an explicit stack (any depth; `files.walk_files`); entries that
    are not regular files but have an accepted ending (FIFOs, sockets, devices) become jobs too,
    refused by name when they are read (`check_target`), so that nothing is left out unseen.
    Before any work, a run whose outputs would collide (two jobs with one target, a target that
    is an input: `check_collisions`) is refused with a `WetokError` naming both files.

    Returns (jobs, number of directory files ignored, single-file case?).
    """
    if not inputs:
        raise WetokError("no input given")
    out = Path(output)
    paths = [Path(p) for p in inputs]
    single = len(paths) == 1 and not paths[0].is_dir()
    if single and not single_output and not out.is_dir() and not output.endswith(("/", "\\")):
        return [Job(paths[0], out)], 0, True
    if not single_output and out.exists() and not out.is_dir():
        raise WetokError(f"{out}: exists and is not a directory (several inputs need an output directory)")
    jobs: list[Job] = []
    ignored = 0
    for path in paths:
        if path.is_dir():
            for file in sorted(walk_files(path)):
                if not accept(file):
                    ignored += 1
                    continue
                rel = file.relative_to(path)
                jobs.append(Job(file, out if single_output else (out / rel).with_suffix(target_suffix), single_output))
        else:
            target = out / path.with_suffix(target_suffix).name
            jobs.append(Job(path, out if single_output else target, single_output))
    if not jobs:
        raise WetokError(f"no input files found in {', '.join(inputs)} ({ignored} other files ignored)")
    check_collisions(jobs)
    return jobs, ignored, single


def check_target(job: Job) -> None:
    """Refuse to overwrite the input itself, and refuse an input that is not a regular file (a
    FIFO, a socket, a device such as /dev/zero: endless or unbounded reads) before reading it."""
    if _same_file(job.source, job.target):
        raise WetokError(f"{job.target}: output is the input file itself; choose another output path")
    require_regular_file(job.source, "an input file", WetokError)


def prepare_target(path: Path) -> None:
    """Create the output's directory; a one-line error when that is impossible."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WetokError(f"{path}: cannot create the output directory ({exc.strerror or exc})") from None
    if path.is_dir():
        raise WetokError(f"{path}: is a directory; give a file name")


def _clash(item: Item, inputs: dict[str, Path], claimed: dict[str, Path]) -> str | None:
    """Why `item` may not write its target (an input of the run, an earlier item's output), or None."""
    key = path_key(item.target)
    if key in inputs:
        return f"{item.target}: the output of {item.source} would replace the input {inputs[key]}"
    if key in claimed:
        return f"{item.target}: already the output of {claimed[key]} in this run; {item.source} would replace it"
    return None


def describe_error(exc: BaseException, target: Path) -> str:
    """One line for a failure: WetokError messages as they are, OS errors with the path."""
    if isinstance(exc, WetokError):
        return str(exc)
    if isinstance(exc, OSError):
        name = exc.filename or target
        return f"{name}: cannot write: {exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return f"{target}: out of memory"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{target}: {type(exc).__name__}: {first}"


def run(
    jobs: Iterable[Job],
    *,
    load: Callable[[Job, int], list[Item]],
    process: Callable[[list[Item]], list[BaseException | None]],
    batch_size: int,
    total: int,
    single: bool,
    progress: bool | None = None,
    max_pending: int | None = None,
) -> Summary:
    """Load items file by file, process them in same-key batches of up to `batch_size`.

    `load(job, index)` returns the job's items (one per image, the first being image `index` of
    the run: the images of the files before it, a file that could not be read counting as one)
    or raises (the file is skipped, or in the
    single-file case the error propagates). `process(items)` does the work for one batch and
    returns, per item, None (done) or the exception that stopped it. Pending items of all keys
    are flushed when more than `max_pending` (default 4 batches) wait.

    Outputs known only once a file is read (the `<name>_0000.png` pictures of a many-image token
    file) are checked as they come: an item whose target is an input of the run, or the target
    of an earlier item (unless its job's target is `shared`), is skipped with its reason (an
    error in the single-file case) instead of replacing that file.
    """
    from tqdm import tqdm

    jobs = list(jobs)
    inputs = {path_key(job.source): job.source for job in jobs}
    claimed: dict[str, Path] = {}
    summary = Summary()
    pending: dict[Hashable, list[Item]] = {}
    images_loaded = 0
    limit = max_pending or 4 * batch_size
    bar = tqdm(total=total, unit="img", disable=(not sys.stderr.isatty()) if progress is None else not progress, file=sys.stderr)

    def skip(source: Path, message: str) -> None:
        summary.skipped.append((str(source), message))
        bar.write(f"wetok: skipped {message}", file=sys.stderr)

    def flush(key: Hashable) -> None:
        items = pending.pop(key)
        try:
            results = process(items)
        except (WetokError, OSError, MemoryError, RuntimeError) as exc:  # RuntimeError: e.g. CUDA out of memory
            if single:
                raise
            results = [exc] * len(items)
        for item, result in zip(items, results):
            if result is None:
                summary.done += 1
            elif single:
                raise result
            else:
                skip(item.source, describe_error(result, item.target))
        bar.update(len(items))

    try:
        for job in jobs:
            try:
                items = load(job, images_loaded)
            except (WetokError, OSError, MemoryError) as exc:
                if single:
                    raise
                skip(job.source, describe_error(exc, job.target))
                bar.update(1)
                images_loaded += 1  # a file that cannot be read counts as one image of the run
                continue
            images_loaded += len(items)
            clash = None if job.shared else next((c for c in (_clash(it, inputs, claimed) for it in items) if c), None)
            if clash is not None:
                if single:
                    raise WetokError(clash)
                skip(job.source, clash)
                bar.update(1)
                continue
            if not job.shared:
                claimed.update((path_key(item.target), item.source) for item in items)
            if len(items) > 1:
                bar.total += len(items) - 1
                bar.refresh()
            for item in items:
                pending.setdefault(item.key, []).append(item)
                if len(pending[item.key]) >= batch_size:
                    flush(item.key)
            while sum(len(v) for v in pending.values()) > limit:
                flush(max(pending, key=lambda k: len(pending[k])))
        for key in list(pending):
            flush(key)
    finally:
        bar.close()
    return summary
