"""One thread at a time in an engine: a second thread's call while one is in progress is
refused with :class:`EngineStateError`; ``start`` and ``close`` wait for it instead."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from engine.errors import EngineStateError


class CallGuard:
    """Refuses overlapping calls from different threads; the same thread may nest them (a
    ``run`` steps, a stop request inside ``step`` closes)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: the outermost call in progress and its thread's name
        self._holder: tuple[str, str] | None = None

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Run ``what`` now, or raise if another thread is inside the engine."""
        if not self._lock.acquire(blocking=False):
            call, thread = self._holder or ("a call", "another")
            raise EngineStateError(
                f"{what}: thread {thread!r} is in {call} on this engine; an engine serves one "
                "thread at a time (serialise the calls with a lock, or give each thread its "
                "own engine)")
        outer = self._holder
        if outer is None:
            self._holder = (what, threading.current_thread().name)
        try:
            yield
        finally:
            self._holder = outer
            self._lock.release()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Wait until no other thread is inside the engine, then keep them out."""
        with self._lock:
            yield
