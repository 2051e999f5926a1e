"""The advisory lock that marks a run alive: its master holds ``flock`` on the run's manifest
for the run's whole life, and the kernel drops it when the master dies, in any PID namespace
(docs/architecture.md, "engine/runtime/shm.py")."""

from __future__ import annotations

import fcntl
import os


def hold(fd: int) -> bool:
    """Lock ``fd`` for this run's life (waiting out a sweep that is looking at it); False when
    the file was removed before the lock was taken, so it no longer names the run."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    return os.fstat(fd).st_nlink > 0


def try_take(fd: int) -> bool:
    """Take ``fd``'s lock without waiting: True when nobody held it (its owner is dead), False
    while a live owner holds it. Closing ``fd`` gives it back."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
