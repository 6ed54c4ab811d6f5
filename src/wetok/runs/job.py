"""A training job's process: joining torchrun's process group, what a torchrun restart means for
resuming, leaving the group, and another process's failure as one `PeerLost` line."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..distributed import Distributed, PeerLost, init_distributed, peer_failure, restart_count, shutdown
from ..errors import WetokError


def run_job(device: str, timeout_minutes: float, resume: bool | str, body: Callable[[Distributed, bool | str], int]) -> int:
    """`body(info, resume)` on this process of the job (one process, or one of torchrun's);
    returns its exit status.

    `resume`: False, True or "auto" (anything else is a `WetokError`). A torchrun restart
    (TORCHELASTIC_RESTART_COUNT > 0, `torchrun --max-restarts N`) without a resume asked for
    means "auto": the run resumes by itself. The process group (`device`; every collective
    waiting at most `timeout_minutes`) is left afterwards: after a normal end waiting for every
    process (rank 0 may still be exporting), after an error without waiting (a peer may never
    arrive). An error that is another process stopping becomes `PeerLost("another process
    stopped (CAUSE); the last checkpoint is kept")`; every other error propagates as it is.
    """
    if resume not in (False, True, "auto"):
        raise WetokError(f"resume must be False, True or 'auto', got {resume!r}")
    info = init_distributed(device, timeout_minutes=timeout_minutes)
    mode: bool | str = "auto" if restart_count() and not resume else resume
    try:
        status = body(info, mode)
        shutdown(info, synchronize=True)
        return status
    except BaseException as exc:
        with contextlib.suppress(Exception):
            shutdown(info, synchronize=False)
        cause = peer_failure(exc) if info.enabled else None
        if cause is None:
            raise
        raise PeerLost(f"another process stopped ({cause}); the last checkpoint is kept") from None
