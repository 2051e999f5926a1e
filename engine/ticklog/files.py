"""The files of a tick log: opening one for writing (locked, never another writer's), and the
names of a rotated set (``run.mcap``, ``run.001.mcap``, ...). The set format: docs/ticklog.md."""

from __future__ import annotations

import fcntl
import os
import re
import stat
from typing import BinaryIO

from engine.errors import TickLogError

MEMBER_DIGITS = 3
"""A set's later files are numbered with at least this many digits (``run.001.mcap``)."""


def _lock(fd: int, path: str) -> None:
    """Hold an exclusive advisory lock on ``fd`` (released when it is closed); TickLogError
    naming ``path`` when another writer holds one. Readers take no lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TickLogError(f"tick log {path!r} is in use by another writer") from None


def log_in_use(path: str | os.PathLike[str]) -> bool:
    """Whether a :class:`TickLogWriter` (in any process) is writing the file at ``path``; a
    check before a long start-up, the writer itself refuses such a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def open_regular(path: str, overwrite: bool) -> tuple[BinaryIO, bool]:
    """``path`` opened for writing and locked, and whether this call created it; TickLogError
    when it cannot be written, is not a regular file (a device, a FIFO, a directory, a
    socket), is in use by another writer, or exists and ``overwrite`` is false."""
    try:
        try:
            fd, created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise TickLogError(f"cannot write tick log {path!r}: not a regular file"
                                   ) from None
            if not overwrite:
                if log_in_use(path):
                    raise TickLogError(f"tick log {path!r} is in use by another writer"
                                       ) from None
                raise TickLogError(f"tick log {path!r} already exists (overwrite=True, or "
                                   f"agentloop run --overwrite, replaces it)") from None
            fd, created = os.open(path, os.O_WRONLY | os.O_NONBLOCK), False
        if not stat.S_ISREG(os.fstat(fd).st_mode):        # replaced since the check
            os.close(fd)
            raise TickLogError(f"cannot write tick log {path!r}: not a regular file")
        _lock(fd, path)
        if not created:
            os.ftruncate(fd, 0)             # only once locked: never another writer's file
    except OSError as exc:
        raise TickLogError(f"cannot write tick log {path!r}: {exc.strerror or exc}") from exc
    return os.fdopen(fd, "wb"), created


def identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file ``path`` names now, or None when it names none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# ------------------------------------------------------------------------------- rotated sets
def member_path(base: str, index: int) -> str:
    """The path of file ``index`` of the set whose first file is ``base``: ``base`` itself for
    0, else the index before the extension (``run.mcap`` -> ``run.001.mcap``; ``run`` ->
    ``run.001``)."""
    if index == 0:
        return base
    root, ext = _split(base)
    return f"{root}.{index:0{MEMBER_DIGITS}d}{ext}"


def _split(base: str) -> tuple[str, str]:
    """``base`` as (root, extension), the extension only where the name has a stem."""
    head, name = os.path.split(base)
    stem, ext = os.path.splitext(name)
    return os.path.join(head, stem), ext


def base_of(path: str, index: int) -> str | None:
    """The first file's path of a set whose file ``index`` is ``path`` (None when ``path`` is
    not named as that file would be)."""
    if index == 0:
        return path
    tag = f".{index:0{MEMBER_DIGITS}d}"
    root, ext = _split(path)
    candidates = [root[:-len(tag)] + ext] if root.endswith(tag) else []
    if path.endswith(tag):
        candidates.append(path[:-len(tag)])
    return next((c for c in candidates if c and member_path(c, index) == path), None)


def members_present(base: str) -> dict[int, str]:
    """The files of the set ``base`` on disk, by index (names only: their headers are not
    read); ``base`` itself as 0 when it exists."""
    root, ext = _split(base)
    folder, stem = os.path.split(root)
    digits = r"\.(\d{" + str(MEMBER_DIGITS) + ",})"
    pattern = re.compile(re.escape(stem) + digits + re.escape(ext) + "$")
    found: dict[int, str] = {}
    try:
        names = os.listdir(folder or ".")
    except OSError:
        names = []
    for name in names:
        match = pattern.match(name)
        if match:
            index = int(match.group(1))
            path = os.path.join(folder, name)
            if index > 0 and member_path(base, index) == path:
                found[index] = path
    if os.path.lexists(base):
        found[0] = base
    return dict(sorted(found.items()))


def set_in_use(base: str) -> bool:
    """Whether a writer holds any file of the set ``base`` (the first or a later one)."""
    return any(log_in_use(path) for path in members_present(base).values())


def later_members(base: str) -> list[str]:
    """The set's files after the first that exist now (an earlier run's, to an overwrite)."""
    return [path for index, path in members_present(base).items() if index > 0]


def refuse_later_members(base: str) -> None:
    """TickLogError when a later file of a set at ``base`` exists (an earlier run's)."""
    stale = later_members(base)
    if stale:
        raise TickLogError(f"tick log {stale[0]!r} (a later file of a set at {base!r}) "
                           f"already exists (overwrite=True, or agentloop run --overwrite, "
                           f"replaces the set)")


def remove_later_members(base: str) -> None:
    """Remove the later files of an earlier set at ``base`` (not one a writer holds)."""
    for path in later_members(base):
        if not log_in_use(path):
            try:
                os.unlink(path)
            except OSError:
                pass
