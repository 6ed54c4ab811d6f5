"""Atomic file writing."""

from __future__ import annotations

import os

import pytest

from wetok.files import atomic_write


def test_replaces_whole_file_with_usual_permissions(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_write_keeps_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


# ---- SIGTERM during a write (issue 17, #4) -------------------------------------------------------
SLOW_WRITER = """
import sys, time
from pathlib import Path
from wetok.cli.main import Terminated, clean_exit_on_sigterm
from wetok.files import atomic_write

target, ready, handled = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "handled"

def slow(tmp):
    tmp.write_text("half of the new content")
    ready.write_text("writing")
    time.sleep(120)

if handled:
    try:
        with clean_exit_on_sigterm():
            atomic_write(target, slow)
    except Terminated:
        print("wetok: terminated", file=sys.stderr)
        sys.exit(143)
else:
    atomic_write(target, slow)
"""


def _kill_mid_write(tmp_path, handled: bool) -> tuple[int, str]:
    """Start SLOW_WRITER, SIGTERM it while its temporary file is half written: (exit code, stderr)."""
    import signal
    import subprocess
    import sys
    import time

    target, ready = tmp_path / "out" / "result.bin", tmp_path / "ready"
    target.parent.mkdir()
    target.write_text("old")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target), str(ready), "handled" if handled else "plain"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert target.read_text() == "old"  # the old file is intact either way
    return proc.returncode, err


def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path):
    code, err = _kill_mid_write(tmp_path, handled=True)
    assert code == 143 and err.strip() == "wetok: terminated"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["result.bin"]


def test_without_the_handler_sigterm_would_leave_the_temporary_file(tmp_path):
    """Why the command line installs the handler: a plain SIGTERM kills the process with no clean-up."""
    code, _ = _kill_mid_write(tmp_path, handled=False)
    assert code == -15
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left[0].startswith(".result.bin.") and left[0].endswith(".tmp") and left[1:] == ["result.bin"]


def test_the_handler_raises_in_the_main_thread_and_is_restored():
    import signal
    import threading
    import time

    from wetok.cli.main import Terminated, clean_exit_on_sigterm

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with pytest.raises(Terminated) as info, clean_exit_on_sigterm():
            assert signal.getsignal(signal.SIGTERM) is not mine
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)
        assert signal.getsignal(signal.SIGTERM) is mine
        with clean_exit_on_sigterm():  # a normal end restores it too
            pass
        assert signal.getsignal(signal.SIGTERM) is mine
        errors = []

        def in_a_thread():
            try:
                with clean_exit_on_sigterm():  # signals belong to the main thread: nothing happens here
                    pass
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
        assert errors == [] and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- regular files only; walking any depth (#9, #12) ---------------------------------------------
def test_require_regular_file_names_what_the_path_is(tmp_path):
    import socket

    from wetok.errors import WetokError
    from wetok.files import require_regular_file

    (tmp_path / "f").write_bytes(b"12345")
    assert require_regular_file(tmp_path / "f", "a thing", WetokError).st_size == 5
    os.mkfifo(tmp_path / "p")
    with pytest.raises(WetokError, match=r"p: is a named pipe \(FIFO\), not a thing \(only regular files are read\)"):
        require_regular_file(tmp_path / "p", "a thing", WetokError)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s"))
        with pytest.raises(WetokError, match="s: is a socket"):
            require_regular_file(tmp_path / "s", "a thing", WetokError)
    with pytest.raises(WetokError, match="no such file"):
        require_regular_file(tmp_path / "missing", "a thing", WetokError)
    with pytest.raises(WetokError, match="is a directory"):
        require_regular_file(tmp_path, "a thing", WetokError)
    if os.path.exists("/dev/null"):
        with pytest.raises(WetokError, match="/dev/null: is a character device"):
            require_regular_file(__import__("pathlib").Path("/dev/null"), "a thing", WetokError)


def test_walk_files_any_depth_hidden_and_links(tmp_path):
    from wetok.files import walk_files

    chain = [tmp_path]
    for _ in range(1500):
        chain.append(chain[-1] / "n")
        chain[-1].mkdir()
    try:
        (chain[-1] / "bottom").write_text("x")
        (tmp_path / ".hidden").mkdir()
        (tmp_path / ".hidden" / "h").write_text("x")
        (tmp_path / ".dot").write_text("x")
        (tmp_path / "up").symlink_to(tmp_path)  # a loop if followed
        (tmp_path / "ln").symlink_to(chain[-1] / "bottom")
        everything = sorted(p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path))
        assert everything == [".dot", ".hidden/h", "ln", "n/" * 1500 + "bottom"]
        visible = sorted(p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path, hidden=False))
        assert visible == ["ln", "n/" * 1500 + "bottom"]
    finally:
        (chain[-1] / "bottom").unlink()
        for folder in reversed(chain[1:]):
            folder.rmdir()
