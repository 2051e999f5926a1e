"""Writing a tick log (:class:`TickLogWriter`): encoding, compressing and writing happen on
a background thread, so a tick only pays for copying its arrays."""

from __future__ import annotations

import fcntl
import functools
import os
import queue
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

import mcap.writer
import numpy as np
import orjson
import zstandard
from mcap.writer import CompressionType, Writer

from engine.errors import TickLogError
from engine.ticklog.scan import CHUNK_FLOOR_BYTES
from engine.ticklog.schema import (
    _SCHEMAS,
    FORMAT_NAME,
    FORMAT_VERSION,
    TOPIC_BELIEFS,
    TOPIC_FOOTER,
    TOPIC_HEADER,
    TOPIC_TICK,
    TickLogFooter,
    TickLogHeader,
    encode_footer,
    encode_header,
    encode_snapshot,
    encode_tick,
    to_json,
)

MAX_HEADER_BYTES = CHUNK_FLOOR_BYTES
"""Largest header message written: a reader reads a chunk this large however well it
compresses (a model's arrays, mostly zeros, compress by thousands to one)."""
_CLOSE = "close"
_MAX_SEQUENCE = 2**32 - 1


ZSTD_LEVEL = 1
"""zstd level of the chunks (see :func:`_fast_mcap_zstd`)."""


class _FastZstd:
    """Stands in for the ``zstandard`` module inside ``mcap.writer`` (only ``compress``)."""

    compress = staticmethod(functools.partial(zstandard.compress, level=ZSTD_LEVEL))


def _fast_mcap_zstd() -> None:
    """Make ``mcap.Writer`` compress chunks at zstd level 1 instead of 3.

    mcap 1.6's Writer calls ``zstandard.compress(chunk)`` (the module's global, default level
    3) and has no option for the level. On 100,000 agents' tick (400 kB of JSON) level 3
    takes 2.2 ms, level 1 0.76 ms for about the same size, which is the difference between
    the writer thread fitting comfortably in 5% of a 100 ms tick or not. This swaps that one
    global (and nothing else); every mcap Writer in the process then writes level-1 zstd,
    which every reader reads. If a future mcap drops the global, nothing is changed and the
    files are simply written at level 3.
    """
    if getattr(mcap.writer, "zstandard", None) is zstandard:
        mcap.writer.zstandard = _FastZstd  # type: ignore[attr-defined]


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


def _open_regular(path: str, overwrite: bool) -> tuple[BinaryIO, bool]:
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


class TickLogWriter:
    """Writes a tick log; :meth:`write_tick` only copies its arrays and queues them.

    A background thread encodes (orjson), compresses (zstd, in MCAP chunks) and writes, ending
    the chunk and flushing the file at least every ``flush_every_s``. The queue holds
    ``queue_size`` records; when it is full the caller waits (nothing is dropped) and the wait
    is counted (:attr:`stats`, and the footer). An error in the background thread is raised
    as :class:`TickLogError` by the next call (and by :meth:`close`).

    ``snapshot_every`` is recorded for the caller's convenience: :meth:`snapshot_due` says
    whether a tick should have a belief snapshot (0: never); :meth:`write_beliefs` always
    writes what it is given. An unwritable ``path``, one that is not a regular file, one that
    exists (unless ``overwrite``) or one another writer holds raises :class:`TickLogError`
    here; if the header cannot be written a file this writer created is removed, one that was
    there before is left (emptied). The file is locked (``flock``, exclusive, advisory) until
    the writer closes it; :meth:`still_at_path` says whether ``path`` still names it.
    """

    def __init__(self, path: str | os.PathLike[str], header: TickLogHeader, *,
                 flush_every_s: float = 0.5, snapshot_every: int = 0, queue_size: int = 32,
                 chunk_size: int = 1 << 20, overwrite: bool = False) -> None:
        if not flush_every_s > 0:
            raise TickLogError(f"flush_every_s must be > 0, got {flush_every_s}")
        if snapshot_every < 0:
            raise TickLogError(f"snapshot_every must be >= 0, got {snapshot_every}")
        if queue_size < 1:
            raise TickLogError(f"queue_size must be >= 1, got {queue_size}")
        self.path = os.fspath(path)
        self.flush_every_s = float(flush_every_s)
        self.snapshot_every = int(snapshot_every)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._closed = False
        self._last_tick = -1
        self._last_seq = 0  # largest tick number of any tick or snapshot queued so far
        self._last_snapshot = -1
        self._ticks = 0
        self._snapshots = 0
        self._queue_full_waits = 0
        self._queue_wait_s = 0.0
        self._background_s = 0.0
        if header.created_unix is None:
            header = TickLogHeader(**{**header.to_dict(), "created_unix": time.time()})
        self.header = header
        self._stream, created = _open_regular(self.path, overwrite)
        st = os.fstat(self._stream.fileno())
        self._identity = (st.st_dev, st.st_ino)
        self._at_path_when_closed: bool | None = None
        try:
            _fast_mcap_zstd()
            self._mcap = Writer(self._stream, chunk_size=chunk_size,
                                compression=CompressionType.ZSTD)
            self._mcap.start(library=f"agentloop {header.engine_version} ({FORMAT_NAME} "
                                     f"v{FORMAT_VERSION})")
            self._channels = {}
            for topic, schema in _SCHEMAS.items():
                sid = self._mcap.register_schema(schema["title"], "jsonschema",
                                                 orjson.dumps(schema))
                self._channels[topic] = self._mcap.register_channel(topic, "json", sid)
            payload = to_json(encode_header(header))
            if len(payload) > MAX_HEADER_BYTES:
                raise TickLogError(f"the header is {len(payload):,} bytes (its model, mostly), "
                                   f"more than a tick log carries ({MAX_HEADER_BYTES:,})")
            t_ns = int(header.created_unix * 1e9)  # type: ignore[operator]
            self._mcap.add_message(self._channels[TOPIC_HEADER], t_ns, payload, t_ns, 0)
            self._mcap.flush()  # the header is on disk before the first tick
        except Exception as exc:
            self._stream.close()
            if created:      # a file that was there before is never removed (nor replaced)
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise TickLogError(f"cannot write tick log {self.path!r}: {exc}") from exc
            raise TickLogError(f"cannot write the header of tick log {self.path!r}: {exc}"
                               ) from exc
        self._thread = threading.Thread(target=self._run, name="ticklog-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------ caller side
    def snapshot_due(self, tick: int) -> bool:
        """Whether ``tick`` should get a belief snapshot (every ``snapshot_every`` ticks)."""
        return self.snapshot_every > 0 and tick % self.snapshot_every == 0

    def write_tick(self, tick: int, observations: np.ndarray, actions: np.ndarray, *,
                   wall_time: float | None = None, duration_s: float = 0.0, level: int = 0,
                   stale_agents: np.ndarray | Sequence[int] | None = None,
                   timings: Mapping[str, float] | None = None,
                   failover: str | None = None,
                   resets: Sequence[tuple[np.ndarray, bool]] = ()) -> None:
        """Queue one tick (copies of the arrays; encoding happens on the writer thread).

        ``tick`` must be larger than the previous one and below 2**32. ``observations`` is
        ``(n, M)`` and ``actions`` ``(n, F)`` integers; ``stale_agents`` the indices of agents
        that kept their last action; ``wall_time`` defaults to now (Unix seconds);
        ``failover`` marks a tick in which the device failed (the error); ``resets`` are the
        resets made before this tick, in order: (agent indices, keep_action).
        """
        self._check_open()
        tick = int(tick)
        if not (self._last_tick < tick <= _MAX_SEQUENCE and tick >= self._last_seq):
            raise TickLogError(f"write_tick: tick {tick} must be greater than the previous "
                               f"tick ({self._last_tick}), at least the last snapshot's "
                               f"({self._last_seq}) and below 2**32")
        obs = np.array(observations, copy=True)
        act = np.array(actions, copy=True)
        if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] != act.shape[0]:
            raise TickLogError(f"write_tick: observations (n, M) and actions (n, F) must be 2-D "
                               f"with the same n, got {obs.shape} and {act.shape}")
        stale = (np.zeros(0, dtype=np.uint8) if stale_agents is None
                 else np.array(stale_agents, copy=True).reshape(-1))
        wall = time.time() if wall_time is None else float(wall_time)
        if not wall >= 0:
            raise TickLogError(f"write_tick: wall_time must be Unix seconds >= 0, got {wall}")
        self._last_tick = self._last_seq = tick
        item = {"tick": tick, "wall_time": wall, "duration_s": float(duration_s),
                "level": int(level), "observations": obs, "actions": act, "stale_agents": stale,
                "timings": {} if timings is None else dict(timings)}
        if failover is not None:
            item["failover"] = str(failover)
        if resets:
            item["resets"] = [{"agents": np.array(agents, dtype=np.int64).reshape(-1),
                               "keep_action": bool(keep)} for agents, keep in resets]
        self._put(("tick", item))

    def write_beliefs(self, tick: int, arrays: Sequence[np.ndarray],
                      meta: Mapping[str, Any] | None = None) -> None:
        """Queue a belief snapshot at ``tick``: one array per factor (copied, any numeric
        dtype, kept as is) and a JSON-serialisable ``meta`` dict (e.g. the codec's name)."""
        self._check_open()
        tick = int(tick)
        if not (self._last_seq <= tick <= _MAX_SEQUENCE and tick > self._last_snapshot):
            raise TickLogError(f"write_beliefs: tick {tick} must be at least the last tick "
                               f"written ({self._last_seq}), greater than the last snapshot's "
                               f"({self._last_snapshot}) and below 2**32")
        self._last_seq = self._last_snapshot = tick
        copies = tuple(np.array(a, copy=True) for a in arrays)
        self._put(("beliefs", {"tick": tick, "arrays": copies,
                               "meta": {} if meta is None else dict(meta)}))

    def close(self, totals: Mapping[str, Any] | None = None, *, error: str | None = None
              ) -> None:
        """Write the footer (``totals``: ticks, missed, level counts, ...), finish the MCAP
        file and wait for the writer thread; raises a pending background error. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            footer = {"totals": {} if totals is None else dict(totals), "error": error}
            self._put(("close", footer), check=False)
            self._thread.join()
        self._raise_pending()

    def __enter__(self) -> TickLogWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            self.close()
        else:
            try:
                self.close(error=f"{exc_type.__name__}: {exc}")
            except TickLogError:
                pass  # the exception leaving the block is the one to see

    @property
    def stats(self) -> dict[str, float]:
        """Counters: ticks and snapshots written, queue-full waits (count, seconds) and the
        writer thread's busy time (encode + compress + write + flush), in seconds."""
        return {"ticks_written": self._ticks, "snapshots_written": self._snapshots,
                "queue_full_waits": self._queue_full_waits, "queue_wait_s": self._queue_wait_s,
                "background_s": self._background_s}

    def still_at_path(self) -> bool:
        """Whether ``path`` still names the file this writer wrote (False when it was removed
        or replaced while being written); after :meth:`close`, as it was when the file was
        closed."""
        if self._at_path_when_closed is not None:
            return self._at_path_when_closed
        return self._same_file()

    def _same_file(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def _check_open(self) -> None:
        self._raise_pending()
        if self._closed:
            raise TickLogError(f"tick log {self.path!r} is closed")

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise TickLogError(f"tick log writer for {self.path!r} failed: "
                               f"{type(self._error).__name__}: {self._error}") from self._error

    def _put(self, item: tuple[str, Any], check: bool = True) -> None:
        try:
            self._queue.put_nowait(item)
            return
        except queue.Full:
            pass
        self._queue_full_waits += 1
        t0 = time.perf_counter()
        try:
            while True:
                if not self._thread.is_alive():  # it died: nothing will drain the queue
                    if check:
                        self._raise_pending()
                    return
                try:
                    self._queue.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue
        finally:
            self._queue_wait_s += time.perf_counter() - t0

    # ---------------------------------------------------------------------- writer thread
    def _run(self) -> None:
        mcap, channels = self._mcap, self._channels
        last_flush = time.monotonic()
        dirty = False
        try:
            while True:
                timeout = None if not dirty else max(0.0, last_flush + self.flush_every_s
                                                     - time.monotonic())
                try:
                    kind, item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    t0 = time.perf_counter()
                    mcap.flush()
                    self._background_s += time.perf_counter() - t0
                    last_flush, dirty = time.monotonic(), False
                    continue
                t0 = time.perf_counter()
                if kind == _CLOSE:
                    footer = TickLogFooter(
                        totals=item["totals"], ticks_written=self._ticks,
                        snapshots_written=self._snapshots,
                        queue_full_waits=self._queue_full_waits, error=item["error"])
                    t_ns = time.time_ns()
                    mcap.add_message(channels[TOPIC_FOOTER], t_ns,
                                     to_json(encode_footer(footer)), t_ns,
                                     min(self._last_tick + 1, _MAX_SEQUENCE))
                    mcap.finish()
                    self._at_path_when_closed = self._same_file()  # before the inode is freed
                    self._stream.close()
                    self._background_s += time.perf_counter() - t0
                    return
                if kind == "tick":
                    messages: Iterator[dict[str, Any]] = iter((encode_tick(item),))
                    t_ns = int(item["wall_time"] * 1e9)
                    channel = channels[TOPIC_TICK]
                    self._ticks += 1
                else:
                    t_ns = time.time_ns()
                    messages = encode_snapshot(item)
                    channel = channels[TOPIC_BELIEFS]
                    self._snapshots += 1
                for doc in messages:  # encoded one by one: the GIL is free in between
                    mcap.add_message(channel, t_ns, to_json(doc), t_ns, item["tick"])
                    dirty = True
                    if time.monotonic() - last_flush >= self.flush_every_s:
                        mcap.flush()
                        last_flush, dirty = time.monotonic(), False
                self._background_s += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc
            try:
                self._at_path_when_closed = self._same_file()
                self._stream.close()
            except Exception:  # noqa: BLE001
                pass
