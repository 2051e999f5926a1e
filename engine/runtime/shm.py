"""Named POSIX shared memory and semaphores for one run, as NumPy views, with crash cleanup.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import json
import mmap
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import posix_ipc
import psutil

from engine.errors import ShmError

PREFIX = "agentloop-"
SHM_DIR = Path("/dev/shm")
MANIFEST = "manifest"
MANIFEST_BYTES = 1 << 16


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
        if owner:
            self._manifest = self._map(MANIFEST, MANIFEST_BYTES, create=True, readonly=False)
            self._write_manifest()

    # ------------------------------------------------------------------------- naming
    def name(self, short: str) -> str:
        """The system-wide name of a segment or semaphore (without the leading slash)."""
        if not short or "/" in short or len(self.prefix) + len(short) > 200:
            raise ShmError(f"invalid shared-memory name {short!r}")
        return self.prefix + short

    def _write_manifest(self) -> None:
        record = {
            "owner_pid": os.getpid(),
            "owner_start": _process_start(os.getpid()),
            "segments": [self.name(s) for s in self._segments],
            "semaphores": [self.name(s) for s in self._semaphores],
        }
        data = json.dumps(record).encode()
        if len(data) + 8 > MANIFEST_BYTES:
            raise ShmError(f"{self.name(MANIFEST)}: manifest full ({len(data)} bytes)")
        buf = self._manifest
        buf[0:8] = len(data).to_bytes(8, "little")
        buf[8:8 + len(data)] = data

    # ------------------------------------------------------------------------- segments
    def _map(self, short: str, size: int, create: bool, readonly: bool) -> mmap.mmap:
        full = "/" + self.name(short)
        try:
            if create:
                shm = posix_ipc.SharedMemory(full, flags=posix_ipc.O_CREX, mode=0o600, size=0)
            else:
                shm = posix_ipc.SharedMemory(full, flags=posix_ipc.O_RDONLY if readonly else 0)
        except posix_ipc.ExistentialError as exc:
            raise ShmError(f"{full[1:]}: {exc}") from None
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
        """Release this process's maps; the owner also unlinks every name, manifest last."""
        if self._closed:
            return
        self._closed = True
        for sem in self._semaphores.values():
            if self.owner:
                _ignore_missing(sem.unlink)
            sem.close()
        if self.owner:
            for short in self._segments:
                _ignore_missing(posix_ipc.unlink_shared_memory, "/" + self.name(short))
            _ignore_missing(posix_ipc.unlink_shared_memory, "/" + self.name(MANIFEST))
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
        stat = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


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


def run_is_alive(run_id: str, directory: Path = SHM_DIR) -> bool:
    """Whether the run's owner still runs (the pid in its id, with the start time recorded)."""
    try:
        pid = int(run_id.split("x", 1)[0])
    except ValueError:
        return False
    start = _process_start(pid)
    if start is None:
        return False
    manifest = directory / f"{PREFIX}{run_id}-{MANIFEST}"
    try:
        raw = manifest.read_bytes()
        length = int.from_bytes(raw[:8], "little")
        record = json.loads(raw[8:8 + length])
    except (OSError, ValueError):
        return True      # the owner lives and is still writing its manifest: leave it alone
    recorded = record.get("owner_start")
    return recorded is None or abs(float(recorded) - start) < 1.0


def sweep_stale(directory: Path = SHM_DIR) -> list[str]:
    """Remove every segment and semaphore of runs whose owner is dead; return their names."""
    removed: list[str] = []
    for run_id, entries in leftover_entries(directory).items():
        if run_is_alive(run_id, directory):
            continue
        for entry in sorted(entries, key=lambda e: e.endswith(MANIFEST)):
            if entry.startswith("sem."):
                _ignore_missing(posix_ipc.unlink_semaphore, "/" + entry[4:])
            else:
                _ignore_missing(posix_ipc.unlink_shared_memory, "/" + entry)
            removed.append(entry)
    return removed


def entries_of(run_ids: Iterable[str], directory: Path = SHM_DIR) -> list[str]:
    """The ``/dev/shm`` entries of the given runs (for tests and diagnostics)."""
    wanted = set(run_ids)
    return [e for rid, entries in leftover_entries(directory).items() if rid in wanted
            for e in entries]
