"""Writing files safely: every output goes to a temporary name beside it and is renamed into place,
so a reader never sees a half-written file and an interrupted write leaves the old file intact."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it over `path`.

    The temporary file (`.<name>.<random>.tmp`) is removed if `write` raises; the final file gets
    the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
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


def require_file(path: Path, kind: str, error: type[Exception]) -> None:
    """Raise `error` with one line naming `path` when it is missing or a directory.

    `kind` completes "is a directory, not {kind}" (e.g. "an image", "a checkpoint file").
    """
    if not path.exists():
        raise error(f"{path}: no such file")
    if path.is_dir():
        raise error(f"{path}: is a directory, not {kind}")
