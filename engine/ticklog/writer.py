"""Writing a tick log (:class:`TickLogWriter`): encoding, compressing and writing happen on
a background thread, so a tick only pays for copying its arrays. With ``max_bytes`` the log is
a rotated set of files (docs/ticklog.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import TickLogError
from engine.runtime.stale import StaleCounts
from engine.ticklog.files import log_in_use, refuse_later_members, remove_later_members
from engine.ticklog.fileset import FileSet
from engine.ticklog.mcapfile import RECORD_BYTES, ZSTD_LEVEL, LogFile
from engine.ticklog.scan import CHUNK_FLOOR_BYTES
from engine.ticklog.schema import (
    TOPIC_BELIEFS,
    TOPIC_TICK,
    TickLogHeader,
    encode_snapshot,
    encode_tick,
    to_json,
)
from engine.ticklog.visual import (
    TOPIC_GRID,
    TOPIC_WORLD_STATS,
    VisualFrame,
    encode_grid,
    encode_stats,
)

__all__ = ["MAX_HEADER_BYTES", "ZSTD_LEVEL", "TickLogWriter", "log_in_use", "rotation_problem"]

MAX_HEADER_BYTES = CHUNK_FLOOR_BYTES
"""Largest header message written: a reader reads a chunk this large however well it
compresses (a model's arrays, mostly zeros, compress by thousands to one)."""
_CLOSE = "close"
_ROTATE = "rotate"
_MAX_SEQUENCE = 2**32 - 1
MARGIN = 32
"""A size-capped file is ended once it is estimated to reach all but 1/MARGIN of its cap (the
estimate is of compressed bytes not yet written, and can be short by a percent or so)."""
MIN_CHUNK = 1 << 12
"""Smallest MCAP chunk (uncompressed) a size-capped writer uses; it uses chunks of at most an
eighth of its cap, so that the size it estimates is never far from the size on disk."""


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

    ``max_bytes`` (``agentloop run --log-max-bytes``) makes the log a set of files, ``path``
    first: when :meth:`rotation_due` says the next tick would take the current file past
    ``max_bytes``, the caller passes the agents' state to :meth:`rotate`, and the file is
    finished and the log goes on in the next (``run.mcap``, ``run.001.mcap``, ...), which
    starts with the header again and that state. ``rotate`` (``--log-rotate``) keeps at most
    that many files, removing the oldest. ``overwrite`` then also removes the later files of an
    earlier set at ``path``; without it they are refused as ``path`` is. ``visual`` declares
    the visual topics (docs/ticklog.md) in every file, for :meth:`write_tick`'s ``visual``.
    """

    def __init__(self, path: str | os.PathLike[str], header: TickLogHeader, *,
                 flush_every_s: float = 0.5, snapshot_every: int = 0, queue_size: int = 32,
                 chunk_size: int = 1 << 20, overwrite: bool = False,
                 max_bytes: int | None = None, rotate: int | None = None,
                 visual: bool = False) -> None:
        if not flush_every_s > 0:
            raise TickLogError(f"flush_every_s must be > 0, got {flush_every_s}")
        if snapshot_every < 0:
            raise TickLogError(f"snapshot_every must be >= 0, got {snapshot_every}")
        if queue_size < 1:
            raise TickLogError(f"queue_size must be >= 1, got {queue_size}")
        problem = rotation_problem(max_bytes, rotate)
        if problem:
            raise TickLogError(problem)
        self.path = os.fspath(path)
        self.flush_every_s = float(flush_every_s)
        self.snapshot_every = int(snapshot_every)
        self.max_bytes = max_bytes
        self.visual = bool(visual)
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
        self._rotations_asked = self._rotations_done = 0
        self._ticks_in_file = 0           # queued since the last rotation asked for
        self._next_opening = 0            # estimated bytes of that rotation's file, opened
        self._snapshot_bytes = 0          # the last snapshot's bytes on disk (estimated)
        self._snapshot_put = self._snapshot_done = 0    # estimated bytes queued, written
        self._tick_bytes = 0              # a recent tick's bytes on disk (estimated)
        self._last_flush = time.monotonic()   # the writer thread's last flush
        self._dirty = False                   # added to since that flush
        fields: dict[str, Any] = {"created_unix": time.time() if header.created_unix is None
                                  else header.created_unix}
        if self.max_bytes is not None:
            fields.update(set_id=uuid.uuid4().hex, set_index=0)
            chunk_size = min(chunk_size, max(self.max_bytes // 8, MIN_CHUNK))
            if not overwrite:
                refuse_later_members(self.path)
        self.header = dataclasses.replace(header, **fields)
        self._set = FileSet(self.path, self.header, chunk_size=chunk_size, overwrite=overwrite,
                            max_header=MAX_HEADER_BYTES, keep=rotate, visual=self.visual)
        if self.max_bytes is not None and overwrite:
            remove_later_members(self.path)       # only once the first file is locked
        self._thread = threading.Thread(target=self._run, name="ticklog-writer", daemon=True)
        self._thread.start()

    @property
    def files(self) -> list[str]:
        """The files of the log this writer wrote and kept, oldest first."""
        return list(self._set.files)

    @property
    def rotated_away(self) -> list[str]:
        """The files it removed (``rotate``), oldest first."""
        return list(self._set.rotated_away)

    @property
    def _file(self) -> LogFile:
        return self._set.current

    # ------------------------------------------------------------------------ caller side
    def snapshot_due(self, tick: int) -> bool:
        """Whether ``tick`` should get a belief snapshot (every ``snapshot_every`` ticks)."""
        return self.snapshot_every > 0 and tick % self.snapshot_every == 0

    def write_tick(self, tick: int, observations: np.ndarray, actions: np.ndarray, *,
                   wall_time: float | None = None, duration_s: float = 0.0, level: int = 0,
                   stale_agents: np.ndarray | Sequence[int] | None = None,
                   timings: Mapping[str, float] | None = None,
                   failover: str | None = None,
                   resets: Sequence[tuple[np.ndarray, bool]] = (),
                   stale_reasons: StaleCounts | None = None,
                   visual: VisualFrame | None = None) -> None:
        """Queue one tick (copies of the arrays; encoding happens on the writer thread).

        ``tick`` must be larger than the previous one and below 2**32. ``observations`` is
        ``(n, M)`` and ``actions`` ``(n, F)`` integers; ``stale_agents`` the indices of agents
        that kept their last action, and ``stale_reasons`` how many for each reason (written
        when any); ``wall_time`` defaults to now (Unix seconds); ``failover`` marks a tick in
        which the device failed (the error); ``resets`` are the resets made before this
        tick, in order: (agent indices, keep_action). ``visual`` (a writer made with
        ``visual``) adds the tick's grid and world figures on the visual topics.
        """
        self._check_open()
        if visual is not None and not self.visual:
            raise TickLogError("write_tick: a visual frame needs TickLogWriter(visual=True)")
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
                "level": int(level), "stale_count": int(stale.size), "observations": obs,
                "actions": act, "stale_agents": stale, "timings": dict(timings or {}),
                "visual": visual}          # not a field of the message: see _tick_messages
        if failover is not None:
            item["failover"] = str(failover)
        if stale_reasons is not None and stale_reasons.total:
            item["stale_reasons"] = stale_reasons.nonzero()
        if resets:
            item["resets"] = [{"agents": np.array(agents, dtype=np.int64).reshape(-1),
                               "keep_action": bool(keep)} for agents, keep in resets]
        self._ticks_in_file += 1
        if not self._tick_bytes:          # none written yet: one byte a value, in base64
            self._tick_bytes = (obs.size + act.size + stale.size) * 4 // 3 + RECORD_BYTES
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
        estimate = self._snapshot_estimate(copies)
        self._snapshot_put += estimate
        self._put(("beliefs", {"tick": tick, "arrays": copies, "estimate": estimate,
                               "meta": {} if meta is None else dict(meta)}))

    def rotation_due(self, snapshot: Sequence[np.ndarray] | None = None) -> bool:
        """Whether the current file should end after the last tick written (``max_bytes``):
        it holds a tick, and its size as estimated (what is written, what is queued, the
        ``snapshot`` about to be written if given, and the next tick) would pass
        ``max_bytes``. A snapshot that does not fit is best given to :meth:`rotate`: the next
        file opens with it."""
        if self.max_bytes is None or self._ticks_in_file == 0:
            return False
        coming = self._tick_bytes + self._snapshot_put - self._snapshot_done
        if snapshot is not None:
            coming += self._snapshot_estimate(snapshot)
        if self._rotations_done == self._rotations_asked:
            size = self._file.size + self._queue.qsize() * self._tick_bytes
        else:         # the next file is not open yet: its opening and the ticks queued for it
            size = self._next_opening + self._ticks_in_file * self._tick_bytes
        return size + coming > self.max_bytes - self.max_bytes // MARGIN

    def _snapshot_estimate(self, arrays: Sequence[np.ndarray]) -> int:
        """Bytes a snapshot of ``arrays`` will take: as the last one written, else guessed."""
        if self._snapshot_bytes:
            return self._snapshot_bytes
        raw = sum(np.asarray(a).nbytes for a in arrays)
        return int(raw * 4 / 3 * self._file.gauge.ratio(TOPIC_BELIEFS))

    def rotate(self, arrays: Sequence[np.ndarray] | None = None,
               meta: Mapping[str, Any] | None = None) -> None:
        """End the current file after the last tick written and go on in the set's next one,
        which starts with the header and a belief snapshot of ``arrays`` (the state after that
        tick; as :meth:`write_beliefs`) so that replay can start there. Without ``arrays``
        the next file has no snapshot (replay must then start in an earlier file)."""
        self._check_open()
        if self.max_bytes is None:
            raise TickLogError("rotate: this writer was not given max_bytes")
        if self._last_tick < 0:
            raise TickLogError("rotate: no tick written yet")
        tick = self._last_tick
        copies = None if arrays is None else tuple(np.array(a, copy=True) for a in arrays)
        self._next_opening = self._file.next_size(0) + (
            0 if copies is None else self._snapshot_estimate(copies))
        self._rotations_asked += 1
        self._ticks_in_file = 0
        self._last_seq = self._last_snapshot = max(self._last_snapshot, tick)
        self._put((_ROTATE, {"tick": tick, "arrays": copies,
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
            self._put((_CLOSE, footer), check=False)
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
        """Counters: ticks and snapshots written, queue-full waits (count, seconds), the
        writer thread's busy time (encode + compress + write + flush), in seconds, and files
        written and removed (rotation)."""
        return {"ticks_written": self._ticks, "snapshots_written": self._snapshots,
                "queue_full_waits": self._queue_full_waits, "queue_wait_s": self._queue_wait_s,
                "background_s": self._background_s,
                "files_written": len(self._set.files) + len(self._set.rotated_away),
                "files_removed": len(self._set.rotated_away)}

    def still_at_path(self) -> bool:
        """Whether every file this writer wrote and kept is still at its path (False when one
        was removed or replaced while being written); after :meth:`close`, as it was when the
        last file was closed."""
        return not self.lost_files()

    def lost_files(self) -> list[str]:
        """The files this writer wrote and kept whose path no longer names them (removed or
        replaced), oldest first."""
        return self._set.lost_files()

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
        delivered = _put_while_alive(self._queue, item, self._thread)
        self._queue_wait_s += time.perf_counter() - t0
        if not delivered and check:
            self._raise_pending()

    # ---------------------------------------------------------------------- writer thread
    def _run(self) -> None:
        pending: dict[str, Any] | None = None   # a rotation waiting for what follows it
        try:
            while True:
                timeout = None if not self._dirty else max(
                    0.0, self._last_flush + self.flush_every_s - time.monotonic())
                try:
                    kind, item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    t0 = time.perf_counter()
                    self._file.flush()
                    self._background_s += time.perf_counter() - t0
                    self._last_flush, self._dirty = time.monotonic(), False
                    continue
                t0 = time.perf_counter()
                if kind == _CLOSE:     # a rotation asked after the last tick opens no file
                    self._set.finish(self._set.footer(item["totals"], self._queue_full_waits,
                                                      item["error"], None),
                                     min(self._last_tick + 1, _MAX_SEQUENCE))
                    self._background_s += time.perf_counter() - t0
                    return
                if kind == _ROTATE:
                    if pending is not None:   # asked twice in a row: one file, newest state
                        self._rotations_done += 1
                    pending = item
                    continue
                if pending is not None:
                    self._set.rotate(min(pending["tick"] + 1, _MAX_SEQUENCE),
                                     self._queue_full_waits)
                    self._write(_ROTATE, pending)
                    pending = None
                self._write(kind, item)
                self._background_s += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc
            with contextlib.suppress(Exception):
                self._set.abandon()

    def _write(self, kind: str, item: dict[str, Any]) -> None:
        """Add a queued tick, snapshot or rotation's snapshot to the current file."""
        messages, topic = _messages(kind, item)
        if kind == "tick":
            self._file.ticks += 1
            self._ticks += 1
        elif item["arrays"] is not None:
            self._file.snapshots += 1
            self._snapshots += 1
        written = 0
        for on, t_ns, doc in messages:  # encoded one by one: the GIL is free between
            payload = to_json(doc)
            self._file.add(on, t_ns, payload, item["tick"])
            written += len(payload) + RECORD_BYTES
            self._dirty = True
            if time.monotonic() - self._last_flush >= self.flush_every_s:
                self._file.flush()
                self._last_flush, self._dirty = time.monotonic(), False
        cost = int(written * self._file.gauge.ratio(topic))
        if kind == "tick":
            self._tick_bytes = max(cost, self._tick_bytes - self._tick_bytes // 32)
        elif written:
            self._snapshot_bytes = cost
        if kind == _ROTATE:
            self._rotations_done += 1
        elif kind != "tick":
            self._snapshot_done += item["estimate"]


def _put_while_alive(items: queue.Queue[tuple[str, Any]], item: tuple[str, Any],
                     thread: threading.Thread) -> bool:
    """Wait for room in ``items`` for ``item``; False once ``thread`` (the one draining the
    queue) has died."""
    while thread.is_alive():
        try:
            items.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _messages(kind: str, item: dict[str, Any]
              ) -> tuple[Iterator[tuple[str, int, dict[str, Any]]], str]:
    """The messages (topic, MCAP log time, message) of a queued tick (with its visual frame),
    snapshot or rotation (the snapshot opening the next file, if any), and the kind of topic
    whose compression they are gauged by."""
    if kind == "tick":
        return _tick_messages(item), TOPIC_TICK
    if item["arrays"] is None:
        return iter(()), TOPIC_BELIEFS
    t_ns = time.time_ns()
    return ((TOPIC_BELIEFS, t_ns, doc) for doc in encode_snapshot(item)), TOPIC_BELIEFS


def _tick_messages(item: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    visual: VisualFrame | None = item.pop("visual", None)
    t_ns = int(item["wall_time"] * 1e9)
    yield TOPIC_TICK, t_ns, encode_tick(item)
    if visual is not None and visual.grid:
        yield TOPIC_GRID, t_ns, encode_grid(visual.grid, item["wall_time"])
    if visual is not None and visual.stats is not None:
        yield TOPIC_WORLD_STATS, t_ns, encode_stats(item["tick"], visual.stats)


def rotation_problem(max_bytes: int | None, rotate: int | None) -> str | None:
    """What is wrong with a writer's ``max_bytes`` and ``rotate`` (None when nothing)."""
    for name, value in (("max_bytes", max_bytes), ("rotate", rotate)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            return f"{name} must be a whole number >= 1 or None, got {value!r}"
    if rotate is not None and max_bytes is None:
        return "rotate (files to keep) needs max_bytes (when to start the next file)"
    return None
