"""The waits of the serve protocol (docs/abi.md, "Synchronisation"): a semaphore wait in short
slices, between which the peer's liveness is checked, and the ``flock`` tests that tell a
live peer from a dead one in any PID namespace."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable

import posix_ipc

from engine.errors import ServeError

#: how long one slice of a wait lasts before the peer's liveness is checked again (seconds)
POLL_S = 0.1


def lock_is_held(fd: int, shared: bool) -> bool:
    """Whether another open file holds a lock on ``fd`` that conflicts with ours: try to take
    it without waiting (shared or exclusive) and give it back at once if it was free."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def wait(semaphore: posix_ipc.Semaphore, gone: Callable[[], str | None],
         timeout_s: float | None, what: str, poll_s: float = POLL_S) -> None:
    """Take ``semaphore``, checking ``gone()`` (why the peer cannot answer, or None) every
    ``poll_s`` seconds; ServeError when it says so or after ``timeout_s`` (None: no limit)."""
    try:
        semaphore.acquire(poll_s)
        return
    except (posix_ipc.BusyError, posix_ipc.SignalError):
        pass
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        reason = gone()
        if reason is not None:
            raise ServeError(reason)
        if deadline is not None and time.monotonic() >= deadline:
            raise ServeError(f"{what}: no answer within {timeout_s:g} s")
        try:
            semaphore.acquire(poll_s)
            return
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            continue
