"""Keeps Numba's cached kernels true to the kernel sources as they are now.

Numba's on-disk cache checks only the file of the function it cached, not the files whose
functions were inlined into it; an edited or upgraded checkout would otherwise run stale
compiled code. Three guards: every kernel function's cache entries are stamped with the
digest of all the kernel sources (:func:`install_locators`), so an entry compiled from other
sources is never loaded, even one that a process started before an edit writes after it;
caches made from other sources are deleted once (:func:`drop_stale_kernel_caches`); and
processes that compile at once save their entries one at a time (:func:`_locked`). The
sources are hashed once per process (well under a millisecond).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from pathlib import Path

_KERNELS = Path(__file__).resolve().parent
_SOURCES = (_KERNELS, _KERNELS / "numba")
_EXTRA_SOURCES = (_KERNELS.parent / "model" / "constants.py",
                  _KERNELS.parent / "model" / "shared_tail.py")
_STAMP = "kernel-sources.sha256"


def source_digest() -> str:
    """SHA-256 over the kernel sources' names and contents."""
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _source_files() -> list[Path]:
    return sorted(p for d in _SOURCES for p in d.glob("*.py")) + list(_EXTRA_SOURCES)


class _KernelSourcesStamp:
    """A cache locator whose source stamp, for a kernel source file, is the digest of every
    kernel source (computed once per process) instead of the hash of that file alone."""

    _digest: str | None = None
    _files: frozenset[str] = frozenset()

    def get_source_stamp(self):  # noqa: ANN201
        return ("agentloop-kernel-sources", _KernelSourcesStamp._digest)

    @classmethod
    def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206
        if os.path.realpath(py_file) not in _KernelSourcesStamp._files:
            return None
        return super().from_function(py_func, py_file)


def _locked(method, shared: bool):  # noqa: ANN001, ANN202
    """``method`` of Numba's ``IndexDataCacheFile`` under a lock on its index: Numba reads the
    index, picks a data file's name and writes both in separate steps, so two processes that
    compile one function's overloads at once (an engine's workers starting cold) could leave
    the index naming one overload's file for the other's code."""

    @functools.wraps(method)
    def run(self, *args):  # noqa: ANN001, ANN002, ANN202
        try:
            fd = os.open(self._index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:                 # an unwritable cache: Numba does not save there
            return method(self, *args)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            return method(self, *args)
        finally:
            os.close(fd)

    run._agentloop_locked = True
    return run


def install_locators() -> None:
    """Make Numba stamp the kernel modules' cache entries with the digest of every kernel
    source (for the in-tree and ``NUMBA_CACHE_DIR`` caches alike), and save and load every
    cache entry under a lock on its index (:func:`_locked`)."""
    from numba.core import caching

    files = getattr(caching, "IndexDataCacheFile", None)
    if files is not None and not getattr(files.save, "_agentloop_locked", False):
        files.save = _locked(files.save, shared=False)
        files.load = _locked(files.load, shared=True)
    _KernelSourcesStamp._digest = source_digest()
    _KernelSourcesStamp._files = frozenset(os.path.realpath(p) for p in _source_files())
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if classes is None:              # another Numba: the deletion above is the only guard
        return
    if any(issubclass(c, _KernelSourcesStamp) for c in classes):
        return
    stamped = [type(f"KernelSources{base.__name__}", (_KernelSourcesStamp, base), {})
               for base in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator)]
    classes[0:0] = stamped


def cache_dirs() -> list[Path]:
    """Where Numba keeps the caches of the kernel modules (``NUMBA_CACHE_DIR`` included)."""
    dirs = [d / "__pycache__" for d in _SOURCES]
    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    if user_dir:
        dirs += [Path(user_dir) / str(d).lstrip(os.sep) for d in _SOURCES]
    return dirs


def drop_stale_kernel_caches() -> bool:
    """Delete the cached kernels if the sources changed since they were cached; True if it
    deleted. Unwritable locations are left alone (Numba then compiles in memory)."""
    digest = source_digest()
    stamp = _SOURCES[0] / "__pycache__" / _STAMP
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    for directory in cache_dirs():
        for pattern in ("*.nbi", "*.nbc"):
            for path in directory.glob(pattern):
                try:
                    path.unlink()
                except OSError:
                    pass
    try:
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:
        pass
    return True
