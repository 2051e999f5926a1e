"""Named POSIX shared memory and semaphores for one run, as NumPy views, with crash cleanup.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import errno
import json
import mmap
import os
import secrets
import stat
import time
import warnings
import weakref
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import posix_ipc
import psutil

from engine.errors import ShmError
from engine.runtime import run_lock

PREFIX = "agentloop-"
SHM_DIR = Path("/dev/shm")
MANIFEST = "manifest"
MANIFEST_BYTES = 1 << 16
#: the manifest field that says its owner holds the run lock (runs of older versions lack it)
LOCKED = "flock"
#: an empty manifest younger than this is a run being created, not a leftover (seconds)
CREATING_S = 60.0

#: runs this process owns, so that a forked child lets go of their lock (see _after_fork)
_OWNED: weakref.WeakSet[Run] = weakref.WeakSet()


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def new_run_id() -> str:
    """``<pid>x<8 hex>``: unique per run, and names the owner process."""
    return f"{os.getpid()}x{secrets.token_hex(4)}"


class Run:
    """The shared-memory namespace of one run: create (owner) or attach (worker) by name."""

    def __init__(self, run_id: str | None = None, owner: bool = True) -> None:
        self.run_id = run_id or new_run_id()
        self.owner = owner
        self.prefix = f"{PREFIX}{self.run_id}-"
        self._maps: dict[str, mmap.mmap] = {}
        self._segments: list[str] = []
        self._semaphores: dict[str, posix_ipc.Semaphore] = {}
        self._closed = False
        #: the process that created this object: only it unlinks (a forked child does not)
        self._pid = os.getpid()
        self._lock_fd: int | None = None
        if owner:
            self._manifest = self._create_manifest()
            _OWNED.add(self)

    # ------------------------------------------------------------------------- naming
    def name(self, short: str) -> str:
        """The system-wide name of a segment or semaphore (without the leading slash)."""
        if not short or "/" in short or len(self.prefix) + len(short) > 200:
            raise ShmError(f"invalid shared-memory name {short!r}")
        return self.prefix + short

    def _create_manifest(self) -> mmap.mmap:
        """The manifest, created first, locked for the run's life, removed last."""
        manifest = self._map(MANIFEST, MANIFEST_BYTES, create=True, readonly=False,
                             keep_fd=True)
        assert self._lock_fd is not None
        if not run_lock.hold(self._lock_fd):
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ShmError(f"{self.name(MANIFEST)}: removed by another process's sweep while "
                           "being created; try again")
        self._write_manifest(manifest)
        return manifest

    def _write_manifest(self, buf: mmap.mmap | None = None) -> None:
        record = {
            "owner_pid": os.getpid(),
            "owner_start": _process_start(os.getpid()),
            "lock": LOCKED,
            "segments": [self.name(s) for s in self._segments],
            "semaphores": [self.name(s) for s in self._semaphores],
        }
        data = json.dumps(record).encode()
        if len(data) + 8 > MANIFEST_BYTES:
            raise ShmError(f"{self.name(MANIFEST)}: manifest full ({len(data)} bytes)")
        buf = buf if buf is not None else self._manifest
        buf[0:8] = len(data).to_bytes(8, "little")
        buf[8:8 + len(data)] = data

    # ------------------------------------------------------------------------- segments
    def _map(self, short: str, size: int, create: bool, readonly: bool,
             keep_fd: bool = False) -> mmap.mmap:
        full = "/" + self.name(short)
        try:
            if create:
                shm = posix_ipc.SharedMemory(full, flags=posix_ipc.O_CREX, mode=0o600, size=0)
            else:
                shm = posix_ipc.SharedMemory(full, flags=posix_ipc.O_RDONLY if readonly else 0)
        except posix_ipc.ExistentialError as exc:
            raise ShmError(f"{full[1:]}: {exc}") from None
        except (OSError, posix_ipc.Error) as exc:
            if create:
                raise _creation_error(full[1:], exc) from None
            raise ShmError(f"{full[1:]}: cannot open it ({exc})") from None
        try:
            if create:
                try:
                    os.posix_fallocate(shm.fd, 0, max(size, 1))
                except OSError as exc:
                    free = _shm_free_bytes()
                    shm.unlink()
                    raise ShmError(
                        f"{full[1:]}: cannot allocate {size:,} bytes in {SHM_DIR} "
                        f"({exc.strerror}; {free:,} bytes free there). Enlarge /dev/shm "
                        "(e.g. docker run --shm-size) or run fewer agents.") from None
            elif shm.size < size:
                raise ShmError(f"{full[1:]}: holds {shm.size} bytes, expected at least {size}")
            prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
            mapped = mmap.mmap(shm.fd, max(size, 1), prot=prot)
            if keep_fd:
                self._lock_fd = os.dup(shm.fd)
        finally:
            shm.close_fd()
        self._maps[short] = mapped
        return mapped

    def create_array(self, short: str, shape: tuple[int, ...], dtype: np.dtype | str
                     ) -> np.ndarray:
        """A new zeroed segment viewed as an array (owner only)."""
        self._require_owner("create_array")
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        mapped = self._map(short, size, create=True, readonly=False)
        self._segments.append(short)
        self._write_manifest()
        return np.frombuffer(mapped, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def share_array(self, short: str, values: np.ndarray) -> np.ndarray:
        """A new segment holding a copy of ``values``; the returned view is read-only."""
        view = self.create_array(short, values.shape, values.dtype)
        view[...] = values
        view.flags.writeable = False
        return view

    def attach_array(self, short: str, shape: tuple[int, ...], dtype: np.dtype | str,
                     readonly: bool = False) -> np.ndarray:
        """Map an existing segment (workers); nothing is unlinked when this run closes."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        mapped = self._map(short, count * dtype.itemsize, create=False, readonly=readonly)
        return np.frombuffer(mapped, dtype=dtype, count=count).reshape(shape)

    # ------------------------------------------------------------------------- semaphores
    def create_semaphore(self, short: str, initial: int = 0) -> posix_ipc.Semaphore:
        self._require_owner("create_semaphore")
        try:
            sem = posix_ipc.Semaphore("/" + self.name(short), flags=posix_ipc.O_CREX,
                                      mode=0o600, initial_value=initial)
        except posix_ipc.ExistentialError as exc:
            raise ShmError(f"{self.name(short)}: {exc}") from None
        except (OSError, posix_ipc.Error) as exc:
            raise _creation_error(self.name(short), exc) from None
        self._semaphores[short] = sem
        self._write_manifest()
        return sem

    def attach_semaphore(self, short: str) -> posix_ipc.Semaphore:
        try:
            sem = posix_ipc.Semaphore("/" + self.name(short))
        except posix_ipc.ExistentialError as exc:
            raise ShmError(f"{self.name(short)}: {exc}") from None
        self._semaphores[short] = sem
        return sem

    # ------------------------------------------------------------------------- lifetime
    def _require_owner(self, what: str) -> None:
        if not self.owner:
            raise ShmError(f"{what}: run {self.run_id} is attached, not owned")
        if self._closed:
            raise ShmError(f"{what}: run {self.run_id} is closed")

    def close(self) -> None:
        """Release this process's maps; the owner also unlinks every name, manifest last, and
        then gives up the run lock. In a forked child nothing is unlinked."""
        if self._closed:
            return
        self._closed = True
        unlink = self.owner and os.getpid() == self._pid
        for sem in self._semaphores.values():
            if unlink:
                _ignore_missing(sem.unlink)
            sem.close()
        if unlink:
            for short in self._segments:
                _ignore_missing(posix_ipc.unlink_shared_memory, "/" + self.name(short))
            _ignore_missing(posix_ipc.unlink_shared_memory, "/" + self.name(MANIFEST))
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        for mapped in self._maps.values():
            try:
                mapped.close()
            except BufferError:
                pass  # a NumPy view is still alive; the map goes when it does
        self._maps.clear()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore_missing(fn, *args) -> None:  # noqa: ANN001
    try:
        fn(*args)
    except posix_ipc.ExistentialError:
        pass


def _shm_free_bytes() -> int:
    try:
        vfs = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return vfs.f_bavail * vfs.f_frsize


def _creation_error(name: str, exc: BaseException) -> ShmError:
    """A name that could not be created (no inode left, no permission, ...), as ShmError."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        try:
            vfs = os.statvfs(SHM_DIR)
            room = (f"; {vfs.f_bavail * vfs.f_frsize:,} bytes and {vfs.f_favail:,} inodes "
                    f"free in {SHM_DIR}")
        except OSError:
            room = ""
        return ShmError(f"{name}: cannot create it ({reason}{room}). Remove leftovers "
                        "(agentloop shm clean) or enlarge /dev/shm (docker run --shm-size).")
    return ShmError(f"{name}: cannot create it in {SHM_DIR} ({reason})")


def _after_fork_in_child() -> None:
    """A forked child shares its parent's runs but does not own them: it drops its copy of
    each run lock (the parent's lock stays held) and will not unlink anything."""
    for run in list(_OWNED):
        if run._lock_fd is not None:
            os.close(run._lock_fd)
            run._lock_fd = None
    _OWNED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------------- stale runs
def leftover_entries(directory: Path = SHM_DIR) -> dict[str, list[str]]:
    """Names in ``/dev/shm`` that belong to agentloop runs, grouped by run id."""
    runs: dict[str, list[str]] = {}
    if not directory.is_dir():
        return runs
    for entry in directory.iterdir():
        name = entry.name[4:] if entry.name.startswith("sem.") else entry.name
        if not name.startswith(PREFIX):
            continue
        run_id = name[len(PREFIX):].split("-", 1)[0]
        runs.setdefault(run_id, []).append(entry.name)
    return runs


#: what a sweep makes of a run in /dev/shm
LIVE, STALE, FOREIGN = "live", "stale", "another user's"


def run_state(run_id: str, directory: Path = SHM_DIR) -> str:
    """``"live"`` while the run's owner holds its lock, ``"stale"`` once nobody does,
    ``"another user's"`` when this user may not look (nor remove it)."""
    state, fd = _claim(run_id, directory)
    if fd is not None:
        os.close(fd)
    return state


def run_is_alive(run_id: str, directory: Path = SHM_DIR) -> bool:
    """Whether the run may be in use (its owner holds its lock, or it is not this user's)."""
    return run_state(run_id, directory) != STALE


def _claim(run_id: str, directory: Path) -> tuple[str, int | None]:
    """The run's state; when stale, also the manifest's descriptor, whose lock this process
    now holds (so no other sweep works on the run at the same time) until it is closed."""
    path = directory / f"{PREFIX}{run_id}-{MANIFEST}"
    try:
        # O_NONBLOCK: a FIFO planted under a manifest's name must not hang the sweep
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return STALE, None        # the manifest goes last: what is left is a closed run's
    except OSError:
        return FOREIGN, None      # not this user's to read (or not a file agentloop made)
    state = FOREIGN
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            pass
        elif run_lock.try_take(fd):
            state = _unlocked_state(run_id, fd)
        else:
            state = LIVE
    finally:
        if state != STALE:
            os.close(fd)
    return state, fd if state == STALE else None


def _unlocked_state(run_id: str, fd: int) -> str:
    """The state of a run whose manifest lock was free (this process holds it now)."""
    info = os.fstat(fd)
    if info.st_nlink == 0:
        return LIVE               # another sweep removed it meanwhile: nothing left to do
    raw = os.pread(fd, MANIFEST_BYTES, 0)
    length = int.from_bytes(raw[:8], "little")
    try:
        record = json.loads(raw[8:8 + length]) if 0 < length <= len(raw) - 8 else None
    except ValueError:
        record = None
    if not isinstance(record, dict):    # not written yet: its owner may be creating it
        return STALE if time.time() - info.st_ctime > CREATING_S else LIVE
    if record.get("lock") == LOCKED:
        return STALE
    return LIVE if _old_owner_lives(run_id, record) else STALE


def _old_owner_lives(run_id: str, record: dict) -> bool:
    """A run of an older version (no lock): its owner's pid and start time, as they did."""
    try:
        pid = int(run_id.split("x", 1)[0])
    except ValueError:
        return False
    start = _process_start(pid)
    recorded = record.get("owner_start")
    return start is not None and (recorded is None or abs(float(recorded) - start) < 1.0)


def sweep_stale(directory: Path = SHM_DIR) -> list[str]:
    """Remove every segment and semaphore of runs whose owner is dead (nobody holds their
    lock), manifest last; return their names. Another user's leftovers are skipped with a
    ``RuntimeWarning``."""
    removed: list[str] = []
    for run_id, entries in leftover_entries(directory).items():
        state, fd = _claim(run_id, directory)
        if state == FOREIGN:
            _warn_foreign(run_id, entries, directory)
        if state != STALE:
            continue
        refused = []
        try:
            for entry in sorted(entries, key=lambda e: e.endswith(MANIFEST)):
                outcome = _unlink_entry(entry)
                if outcome == "removed":
                    removed.append(entry)
                elif outcome == "refused":
                    refused.append(entry)
        finally:
            if fd is not None:
                os.close(fd)
        if refused:
            _warn_foreign(run_id, refused, directory)
    return removed


def _unlink_entry(entry: str) -> str:
    try:
        if entry.startswith("sem."):
            posix_ipc.unlink_semaphore("/" + entry[4:])
        else:
            posix_ipc.unlink_shared_memory("/" + entry)
    except posix_ipc.ExistentialError:
        return "missing"
    except (posix_ipc.PermissionsError, PermissionError):
        return "refused"
    return "removed"


def owner_uid(entries: list[str], directory: Path = SHM_DIR) -> int | None:
    """The user id that owns the first of ``entries`` that still exists."""
    for entry in entries:
        try:
            return os.lstat(directory / entry).st_uid
        except OSError:
            continue
    return None


def _warn_foreign(run_id: str, entries: list[str], directory: Path) -> None:
    uid = owner_uid(entries, directory)
    warnings.warn(f"{directory}: left run {run_id} alone ({len(entries)} entries): they "
                  f"belong to another user (uid {uid}) or were not made by agentloop; their "
                  "owner or root can remove them (`agentloop shm clean`)", RuntimeWarning,
                  stacklevel=3)


def entries_of(run_ids: Iterable[str], directory: Path = SHM_DIR) -> list[str]:
    """The ``/dev/shm`` entries of the given runs (for tests and diagnostics)."""
    wanted = set(run_ids)
    return [e for rid, entries in leftover_entries(directory).items() if rid in wanted
            for e in entries]
