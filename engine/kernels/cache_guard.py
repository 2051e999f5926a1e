"""Drops the package's cached Numba kernels when any kernel source changed.

Numba's on-disk cache checks only the file of the function it cached, not the files whose
functions were inlined into it; an edited or upgraded checkout would otherwise run stale
compiled code. The check hashes the kernel sources once per process (well under a
millisecond) and keeps the digest beside the caches.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_KERNELS = Path(__file__).resolve().parent
_SOURCES = (_KERNELS, _KERNELS / "numba")
_EXTRA_SOURCES = (_KERNELS.parent / "model" / "constants.py",)
_STAMP = "kernel-sources.sha256"


def source_digest() -> str:
    """SHA-256 over the kernel sources' names and contents."""
    digest = hashlib.sha256()
    files = sorted(p for d in _SOURCES for p in d.glob("*.py")) + list(_EXTRA_SOURCES)
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


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
