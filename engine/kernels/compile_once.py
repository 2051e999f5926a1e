"""One cold compile per kernel overload across processes.

Numba compiles a kernel that its cache lacks in every process that asks for it, so processes
starting cold at once (an engine's workers, test processes, a CLI run beside them) each spend
the same minutes compiling the same code. With :func:`install`, a process that finds a kernel
overload missing from the cache takes a lock named by that function and signature, looks in
the cache again (another process may have saved it meanwhile) and compiles only if it is
still missing; a process that finds the lock taken waits for the compile and loads its entry.
Only the kernel modules' functions (``cache_guard``'s stamped caches) take part.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import threading
from typing import Any

from numba.core import sigutils

from engine.kernels.cache_guard import _KernelSourcesStamp

_HELD: dict[str, int] = {}
"""Lock files this process holds (path -> descriptor): the overloads it is compiling."""
_ARMED = threading.local()
"""``path``: the lock that the ``Dispatcher.compile`` running in this thread may take, until
its own cache look-up (the first after it starts) uses it. Only that look-up locks: its
compile is what lets go (other callers of ``load_overload``, such as Numba's ufunc builders,
never would)."""


def _lock_path(cache: Any, sig: Any, target_context: Any) -> str | None:
    """The lock file of ``sig``'s overload in ``cache`` (named by the cache's own key: the
    signature, the machine and the function's code and closure), or None for a cache not of
    a kernel module (or not a file cache)."""
    locator = getattr(getattr(cache, "_impl", None), "locator", None)
    if not isinstance(locator, _KernelSourcesStamp):
        return None
    key = str(cache._index_key(sig, target_context.codegen()))
    index = cache._cache_file._index_path
    return f"{index}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.compiling"


def _load_or_wait(load):  # noqa: ANN001, ANN202
    """``Cache.load_overload`` that, on a miss, waits for any process compiling the overload
    and loads again; on a second miss it keeps the lock until the compile ends."""

    @functools.wraps(load)
    def run(self, sig, target_context):  # noqa: ANN001, ANN202
        found = load(self, sig, target_context)
        path, _ARMED.path = getattr(_ARMED, "path", None), None
        if found is not None or path is None:
            return found
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:                 # an unwritable cache: compile here, as Numba does
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        found = load(self, sig, target_context)
        if found is not None:
            os.close(fd)
            return found
        _HELD[path] = fd
        return None

    run._agentloop_compile_once = True
    return run


def _compile_then_release(compile_):  # noqa: ANN001, ANN202
    """``Dispatcher.compile`` that lets go of the lock its cache miss took, when the compile
    ends (saved to the cache, or failed)."""

    @functools.wraps(compile_)
    def run(self, sig):  # noqa: ANN001, ANN202
        args, _ = sigutils.normalize_signature(sig)
        if tuple(args) in self.overloads:          # compiled here already: nothing to lock
            return compile_(self, sig)
        path = _lock_path(getattr(self, "_cache", None), sig, self.targetctx)
        mine = path is not None and path not in _HELD
        outer = getattr(_ARMED, "path", None)
        _ARMED.path = path if mine else None
        try:
            return compile_(self, sig)
        finally:
            _ARMED.path = outer
            if mine and path in _HELD:
                os.close(_HELD.pop(path))

    run._agentloop_compile_once = True
    return run


def _forget_in_child() -> None:
    """A forked child does not compile for its parent: close its copies of the parent's
    locks (the parent keeps them)."""
    for fd in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


def install() -> None:
    """Make Numba compile each kernel overload missing from the cache in one process at a
    time, the others loading what it saved (idempotent)."""
    from numba.core import caching, dispatcher

    if getattr(caching.Cache.load_overload, "_agentloop_compile_once", False):
        return
    caching.Cache.load_overload = _load_or_wait(caching.Cache.load_overload)
    dispatcher.Dispatcher.compile = _compile_then_release(dispatcher.Dispatcher.compile)
    os.register_at_fork(after_in_child=_forget_in_child)
