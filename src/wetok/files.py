"""Files, safely: every output goes to a temporary name beside it and is renamed into place, so a
reader never sees a half-written file and an interrupted write leaves the old file intact; every
input is checked to be a regular file (never a device or a pipe, whose reads block or never end)
and read only up to a bound; folders are walked without recursion."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import WetokError


def cache_dir(name: str) -> Path:
    """wetok's cache folder `name`: `$XDG_CACHE_HOME/wetok/NAME` (default `~/.cache/wetok/NAME`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wetok" / name


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`.

    The temporary file (`.<name>.<random>.tmp`) is removed if `write` raises, KeyboardInterrupt
    and the command line's SIGTERM exception (`wetok.cli.main.clean_exit_on_sigterm`) included;
    the final file gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_file(path: Path, kind: str, error: type[Exception], context: str = "") -> None:
    """Raise `error` with one line naming `path` when it is missing or a directory.

    `kind` completes "is a directory, not {kind}" (e.g. "an image", "a checkpoint file");
    `context` stands after the path (e.g. "cannot read config: ").
    """
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a loop of links
        raise error(f"{path}: {context or 'cannot read: '}{getattr(exc, 'strerror', None) or exc}") from None
    if not exists:
        raise error(f"{path}: {context}no such file")
    if is_dir:
        raise error(f"{path}: {context}is a directory, not {kind}")


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def require_regular_file(path: Path, kind: str, error: type[Exception], context: str = "") -> os.stat_result:
    """`require_file`, and also refuse (before anything is read) what is not a regular file: a
    named pipe, a socket, a device such as /dev/zero (endless or unbounded reads). Symbolic links
    are followed. Returns the file's `os.stat_result`."""
    require_file(path, kind, error, context)
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise error(f"{path}: {context or 'cannot read: '}{getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        what = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise error(f"{path}: {context}is {what}, not {kind} (only regular files are read)")
    return info


def read_regular_file(
    path: Path, kind: str, error: type[Exception], max_bytes: int | Callable[[bytes], int], context: str = ""
) -> bytes:
    """The bytes of `path`, refusing with a one-line `error` naming it what `require_regular_file`
    refuses and a file of more than `max_bytes` bytes (checked before reading, and again while
    reading, in case it grows). `max_bytes` may depend on the file's first 4 bytes (a callable)."""
    info = require_regular_file(path, kind, error, context)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
            limit = max_bytes(head) if callable(max_bytes) else max_bytes
            if info.st_size > limit:
                raise error(f"{path}: {info.st_size} bytes, larger than {kind} can be (at most {limit} bytes)")
            blob = head + fh.read(limit + 1 - len(head))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(blob) > limit:
        raise error(f"{path}: larger than {kind} can be (at most {limit} bytes)")
    return blob


def walk_files(root: Path, *, hidden: bool = True) -> Iterator[Path]:
    """Every non-directory entry below the folder `root` (files, and also FIFOs, sockets and
    devices, which the callers refuse by name), in no particular order, walked with an explicit
    stack: any depth of nesting, never a RecursionError. Symbolic links to folders are not
    followed (no loops); links to files are listed. `hidden=False` leaves out names starting
    with "." and everything inside such folders. Raises `WetokError` naming a folder that cannot
    be listed (nothing is silently left out)."""
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
        except OSError as exc:
            raise WetokError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from None
        for entry in found:
            if not hidden and entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_folder = False
            if is_folder:
                stack.append(entry.path)
            elif not _is_link_to_folder(entry):
                yield Path(entry.path)


def _is_link_to_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink() and entry.is_dir()
    except OSError:
        return False


def write_json_record(path: Path, record: dict) -> None:
    """Write a run's settings record (JSON, indented) atomically."""
    import json

    atomic_write(path, lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))


def check_json_record(path: Path, record: dict, *, what: str, names: Callable[[str], str] = str) -> None:
    """An earlier run's settings record at `path` must hold `record`'s values (a resume continues
    only what the same settings started). `record["format"]` names the kind of record; `what`
    names the command in the messages ("wetok sample"); `names(key)` how a differing key is
    called. Anything else is one `WetokError` naming the file and what differs."""
    import json

    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WetokError(f"{path}: unreadable record of an earlier {what} run ({exc}); remove the output to start again") from None
    if not isinstance(earlier, dict) or earlier.get("format") != record["format"]:
        raise WetokError(f"{path}: not the record of a {what} run; choose another --output")
    differ = dict.fromkeys(names(key) for key in record if earlier.get(key) != record[key])
    if differ:
        raise WetokError(f"{path.parent}: made with other settings ({', '.join(differ)}); "
                         "use the same settings to resume, or another --output")
