"""The tick log: one file per run recording every tick, written off the tick's thread.

Format
------
An MCAP file (https://mcap.dev; written with the ``mcap`` package, so it opens in Foxglove and
is seekable by time) whose messages are JSON documents encoded by orjson, in zstd-compressed
chunks. Four topics, each its own channel with a ``jsonschema`` schema:

* ``/agentloop/header`` (once, the first message): :class:`TickLogHeader` (format and engine
  versions, model hash and optionally the model's ``.npz`` bytes, config, seed, agents, workers,
  world config, rate, free ``extra``);
* ``/agentloop/tick`` (one per tick): tick, wall time, duration, degradation level,
  observations, actions, stale agents, timings (:class:`TickRecord`);
* ``/agentloop/beliefs`` (optional, every ``snapshot_every`` ticks): per-factor belief arrays
  plus an opaque ``meta`` dict (:class:`BeliefSnapshot`); a snapshot of more than
  :data:`SNAPSHOT_PART_BYTES` is split along the agents axis into several messages
  (``part``/``parts``) so that no single encoding step holds the GIL for long;
* ``/agentloop/footer`` (last, written by :meth:`TickLogWriter.close`): totals
  (:class:`TickLogFooter`).

Every message's MCAP ``log_time`` is its wall time (ns since the Unix epoch, so Foxglove's
timeline is real time) and its MCAP ``sequence`` is its tick number (ticks are < 2**32,
strictly increasing, and a snapshot's tick is at least the last tick written), which is what the
reader seeks by (binary search over chunks). Dict keys that are not strings (level counts keyed
by int) come back as strings, as JSON has it.

Arrays are JSON objects ``{"dtype": "<u1", "shape": [n, 2], "b64": "..."}``: the raw
little-endian bytes in base64, not JSON lists. Measured with 100,000 agents (observations
(100000, 2) and actions (100000, 1) uint8): JSON lists cost 8.5 ms to encode, 4.7 ms to
compress and 59 ms to parse back per tick; base64 costs 0.4 ms, 0.9 ms and 0.1 ms, and
compresses smaller (236 kB against 309 kB). Arrays of at most :data:`INLINE_MAX` elements
(stale agents, small populations) are written as a plain ``"data"`` list instead, so small runs
stay readable in Foxglove; the reader accepts both. Integer observations, actions and stale
indices are stored in the smallest integer dtype that holds their values (the reader returns
them in that dtype: equal values, smaller type); belief arrays keep their dtype.

Chunks are zstd level 1 (mcap's Writer hard-codes level 3, which costs 2.2 ms against 0.8 ms
per 100,000-agent tick for about the same size: see :func:`_fast_mcap_zstd`).

Crash safety: the header is flushed to disk by the constructor; after that the writer ends the
MCAP chunk in progress and flushes the file at least every ``flush_every_s`` (0.5 s) through
``mcap.Writer.flush`` (public API), so a process killed with SIGKILL loses at most that much
(plus whatever was still queued; no fsync: an OS crash may lose more). The reader walks
the records itself (rather than through ``mcap.reader``) so that a file cut at any byte after
its header reads up to its last complete chunk with ``truncated`` set, and every inconsistency
raises :class:`TickLogError` naming the byte offset and what was expected there.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import queue
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any, BinaryIO

import mcap.writer
import numpy as np
import orjson
import zstandard
from mcap.writer import CompressionType, Writer

from engine.errors import TickLogError

__all__ = [
    "FORMAT_VERSION", "INLINE_MAX", "BeliefSnapshot", "TickLogError", "TickLogFooter",
    "TickLogHeader", "TickLogReader", "TickLogWriter", "TickRecord",
]

FORMAT_VERSION = 1
"""Version of the message layout; readers refuse files with a newer one."""
FORMAT_NAME = "agentloop-ticklog"
INLINE_MAX = 64
"""Arrays of at most this many elements are written as JSON lists, larger ones as base64."""

TOPIC_HEADER = "/agentloop/header"
TOPIC_TICK = "/agentloop/tick"
TOPIC_BELIEFS = "/agentloop/beliefs"
TOPIC_FOOTER = "/agentloop/footer"

_MAGIC = b"\x89MCAP0\r\n"
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MAX_SEQUENCE = 2**32 - 1

# MCAP opcodes (https://mcap.dev/spec)
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE = 0x01, 0x02, 0x03, 0x04, 0x05
_OP_CHUNK, _OP_MESSAGE_INDEX, _OP_DATA_END = 0x06, 0x07, 0x0F
_OPCODES = set(range(0x01, 0x10))
_REC = struct.Struct("<BQ")  # opcode, content length
_CHUNK_HEAD = struct.Struct("<QQQII")  # start, end, uncompressed size, crc, compression length
_MSG_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time


def _engine_version() -> str:
    try:
        return version("agentloop")
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class TickLogHeader:
    """What a run needs to be replayed: written once, first. Plain data (``to_dict``)."""

    n_agents: int
    hz: float | None = None
    seed: int = 0
    workers: int = 0
    model_hash: str = ""
    model_npz: bytes | None = None
    """The model's ``GenerativeModel.save`` bytes (opaque here), or None."""
    config: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    engine_version: str = field(default_factory=_engine_version)
    format_version: int = FORMAT_VERSION
    created_unix: float | None = None
    """Wall time the log was opened; the writer fills it in when None."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TickLogHeader:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TickRecord:
    """One tick as read back. Arrays are read-only; integer arrays come back in the smallest
    dtype that holds their values."""

    tick: int
    wall_time: float
    duration_s: float
    level: int
    observations: np.ndarray
    actions: np.ndarray
    stale_agents: np.ndarray
    timings: dict[str, float]
    failover: str | None = None
    """Set when the population's device failed in this tick and the run went on on the CPU
    from a copy of its state (``Engine.failovers``): the error, as recorded."""


@dataclass(frozen=True)
class BeliefSnapshot:
    """Belief arrays (one per factor, any dtype) at the end of ``tick``, with ``meta``."""

    tick: int
    arrays: tuple[np.ndarray, ...]
    meta: dict[str, Any]


@dataclass(frozen=True)
class TickLogFooter:
    """Written by :meth:`TickLogWriter.close`: the caller's ``totals`` and the writer's own."""

    totals: dict[str, Any]
    ticks_written: int
    snapshots_written: int
    queue_full_waits: int
    """How many times ``write_tick``/``write_beliefs`` found the queue full and waited."""
    error: str | None = None
    """Set when the log was closed by an exception leaving a ``with`` block."""


# ----------------------------------------------------------------------------------- schemas
def _array_schema(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "properties": {"dtype": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "b64": {"type": "string", "contentEncoding": "base64"},
                           "data": {"type": "array"}}}


_SCHEMAS: dict[str, dict[str, Any]] = {
    TOPIC_HEADER: {"title": "agentloop.TickLogHeader", "type": "object", "properties": {
        "format": {"type": "string"}, "format_version": {"type": "integer"},
        "engine_version": {"type": "string"}, "n_agents": {"type": "integer"},
        "hz": {"type": ["number", "null"]}, "seed": {"type": "integer"},
        "workers": {"type": "integer"}, "model_hash": {"type": "string"},
        "model_npz": {"type": ["string", "null"], "contentEncoding": "base64"},
        "config": {"type": "object"}, "world": {"type": "object"}, "extra": {"type": "object"},
        "created_unix": {"type": ["number", "null"]}}},
    TOPIC_TICK: {"title": "agentloop.TickRecord", "type": "object", "properties": {
        "tick": {"type": "integer"}, "wall_time": {"type": "number"},
        "duration_s": {"type": "number"}, "level": {"type": "integer"},
        "observations": _array_schema("(agents, modalities) observation indices"),
        "actions": _array_schema("(agents, factors) action indices"),
        "stale_agents": _array_schema("indices of agents that kept their last action"),
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "failover": {"type": "string"}}},
    TOPIC_BELIEFS: {"title": "agentloop.BeliefSnapshot", "type": "object", "properties": {
        "tick": {"type": "integer"}, "part": {"type": "integer"}, "parts": {"type": "integer"},
        "arrays": {"type": "array", "items": _array_schema("one factor's beliefs")},
        "meta": {"type": "object"}}},
    TOPIC_FOOTER: {"title": "agentloop.TickLogFooter", "type": "object", "properties": {
        "totals": {"type": "object"}, "ticks_written": {"type": "integer"},
        "snapshots_written": {"type": "integer"}, "queue_full_waits": {"type": "integer"},
        "error": {"type": ["string", "null"]}}},
}


# ------------------------------------------------------------------------------------ arrays
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)
_SIGNED = (np.int8, np.int16, np.int32, np.int64)


def _compact(a: np.ndarray) -> np.ndarray:
    """The same integer values in the smallest integer dtype that holds them."""
    if a.dtype.kind not in "iu" or a.size == 0:
        return a
    lo, hi = int(a.min()), int(a.max())
    for dt in _UNSIGNED if lo >= 0 else _SIGNED:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt, copy=False)
    return a


def _encode_array(a: np.ndarray) -> dict[str, Any]:
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    out: dict[str, Any] = {"dtype": le.dtype.str, "shape": list(a.shape)}
    if a.size <= INLINE_MAX and a.dtype.kind in "biu":  # floats: base64, exact (NaN, inf)
        out["data"] = le.ravel().tolist()
    else:
        out["b64"] = base64.b64encode(np.ascontiguousarray(le).tobytes()).decode("ascii")
    return out


def _decode_array(obj: Any) -> np.ndarray:
    """Inverse of :func:`_encode_array`; raises ValueError/KeyError/TypeError on bad input."""
    dtype = np.dtype(obj["dtype"])
    if dtype.kind not in "biufc" or dtype.hasobject:
        raise ValueError(f"unsupported array dtype {obj['dtype']!r}")
    shape = tuple(int(s) for s in obj["shape"])
    if any(s < 0 for s in shape):
        raise ValueError(f"negative array shape {shape}")
    if "b64" in obj:
        arr = np.frombuffer(base64.b64decode(obj["b64"], validate=True), dtype=dtype)
    else:
        try:
            arr = np.asarray(obj["data"], dtype=dtype)
        except OverflowError as exc:  # a value the dtype cannot hold (300 as uint8)
            raise ValueError(f"array data out of range for {dtype}: {exc}") from None
    if arr.size != math.prod(shape):
        raise ValueError(f"array has {arr.size} elements, its shape {shape} needs "
                         f"{math.prod(shape)}")
    arr = arr.reshape(shape)
    arr.flags.writeable = False
    return arr


# ------------------------------------------------------------------------------------ writer
_CLOSE = "close"
SNAPSHOT_PART_BYTES = 1 << 20
"""Belief snapshots larger than this are written as several messages (parts) of about this
many bytes of array data each, split along the arrays' first (agents) axis: encoding a 20 MB
snapshot in one go would hold the GIL for ~60 ms, in parts it holds it ~3 ms at a time."""


def _optional_str(value: Any) -> str | None:
    """A tick's optional text field: None, or a string (anything else is corrupt)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _snapshot_parts(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The messages of one snapshot: ``part`` ``p`` of ``parts`` holds rows ``p`` of
    ``np.array_split(a, parts)`` of every array ``a``; ``meta`` rides on part 0."""
    arrays: tuple[np.ndarray, ...] = item["arrays"]
    total = sum(a.nbytes for a in arrays)
    parts = 1 if any(a.ndim == 0 for a in arrays) else max(1, -(-total // SNAPSHOT_PART_BYTES))
    pieces = [np.array_split(a, parts, axis=0) for a in arrays] if parts > 1 else None
    for p in range(parts):
        doc: dict[str, Any] = {
            "tick": item["tick"], "part": p, "parts": parts,
            "arrays": [_encode_array(a if pieces is None else pieces[f][p])
                       for f, a in enumerate(arrays)]}
        if p == 0:
            doc["meta"] = item["meta"]
        yield doc


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


class TickLogWriter:
    """Writes a tick log; :meth:`write_tick` only copies its arrays and queues them.

    A background thread encodes (orjson), compresses (zstd, in MCAP chunks) and writes, ending
    the chunk and flushing the file at least every ``flush_every_s``. The queue holds
    ``queue_size`` records; when it is full the caller waits (nothing is dropped) and the wait
    is counted (:attr:`stats`, and the footer). An error in the background thread is raised
    as :class:`TickLogError` by the next call (and by :meth:`close`).

    ``snapshot_every`` is recorded for the caller's convenience: :meth:`snapshot_due` says
    whether a tick should have a belief snapshot (0: never); :meth:`write_beliefs` always
    writes what it is given. An unwritable ``path`` raises :class:`TickLogError` here.
    """

    def __init__(self, path: str | os.PathLike[str], header: TickLogHeader, *,
                 flush_every_s: float = 0.5, snapshot_every: int = 0, queue_size: int = 32,
                 chunk_size: int = 1 << 20) -> None:
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
        try:
            self._stream: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by the thread)
        except OSError as exc:
            raise TickLogError(f"cannot write tick log {self.path!r}: {exc.strerror or exc}"
                               ) from exc
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
            doc = header.to_dict()
            npz = doc["model_npz"]
            doc["model_npz"] = None if npz is None else base64.b64encode(npz).decode("ascii")
            doc["format"] = FORMAT_NAME
            t_ns = int(header.created_unix * 1e9)  # type: ignore[operator]
            self._mcap.add_message(self._channels[TOPIC_HEADER], t_ns,
                                   orjson.dumps(doc, option=_JSON_OPTS), t_ns, 0)
            self._mcap.flush()  # the header is on disk before the first tick
        except Exception as exc:
            self._stream.close()
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
                   failover: str | None = None) -> None:
        """Queue one tick (copies of the arrays; encoding happens on the writer thread).

        ``tick`` must be larger than the previous one and below 2**32. ``observations`` is
        ``(n, M)`` and ``actions`` ``(n, F)`` integers; ``stale_agents`` the indices of agents
        that kept their last action; ``wall_time`` defaults to now (Unix seconds);
        ``failover`` marks a tick in which the device failed (the error).
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
                    item.update(ticks_written=self._ticks, snapshots_written=self._snapshots,
                                queue_full_waits=self._queue_full_waits)
                    t_ns = time.time_ns()
                    mcap.add_message(channels[TOPIC_FOOTER], t_ns,
                                     orjson.dumps(item, option=_JSON_OPTS), t_ns,
                                     min(self._last_tick + 1, _MAX_SEQUENCE))
                    mcap.finish()
                    self._stream.close()
                    self._background_s += time.perf_counter() - t0
                    return
                if kind == "tick":
                    for key in ("observations", "actions", "stale_agents"):
                        item[key] = _encode_array(_compact(item[key]))
                    t_ns = int(item["wall_time"] * 1e9)
                    messages: Iterator[dict[str, Any]] = iter((item,))
                    channel = channels[TOPIC_TICK]
                    self._ticks += 1
                else:
                    t_ns = time.time_ns()
                    messages = _snapshot_parts(item)
                    channel = channels[TOPIC_BELIEFS]
                    self._snapshots += 1
                for doc in messages:  # encoded one by one: the GIL is free in between
                    mcap.add_message(channel, t_ns, orjson.dumps(doc, option=_JSON_OPTS),
                                     t_ns, item["tick"])
                    dirty = True
                    if time.monotonic() - last_flush >= self.flush_every_s:
                        mcap.flush()
                        last_flush, dirty = time.monotonic(), False
                self._background_s += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            self._error = exc
            try:
                self._stream.close()
            except Exception:  # noqa: BLE001
                pass


# ------------------------------------------------------------------------------------ reader
@dataclass(frozen=True)
class _Chunk:
    offset: int  # of the chunk record in the file
    length: int  # of its content


@dataclass(frozen=True)
class _Message:
    topic: str
    sequence: int
    data: memoryview
    where: str  # for error messages


class TickLogReader:
    """Reads a tick log; tolerates a file cut off by a crash.

    Opening walks the MCAP record framing (not the compressed contents) and reads the header,
    so it is fast on long logs; chunks are decompressed (and their CRC checked) as they are
    read. ``truncated`` is True when the file does not end in a complete MCAP summary (the
    writer never finished: a crash, or a file still being written); everything before
    ``truncated_at`` (a byte offset) is read normally. A foreign or corrupt file raises
    :class:`TickLogError` naming the byte offset and what was expected there.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise TickLogError(f"cannot read tick log {self.path!r}: {exc.strerror or exc}"
                               ) from exc
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    # -------------------------------------------------------------------------- public
    @property
    def header(self) -> TickLogHeader:
        return self._header

    @property
    def last_tick(self) -> int | None:
        """The last tick in the file (None when there is none)."""
        for i in range(len(self._chunks) - 1, -1, -1):
            ticks = [m.sequence for m in self._load(i) if m.topic == TOPIC_TICK]
            if ticks:
                return max(ticks)
        return None

    @property
    def footer(self) -> TickLogFooter | None:
        """The footer, or None when the writer never wrote it (a crash)."""
        if not self._chunks:
            return None
        for m in reversed(self._load(len(self._chunks) - 1)):
            if m.topic == TOPIC_FOOTER:
                doc = self._json(m)
                try:
                    return TickLogFooter(
                        totals=dict(doc["totals"]), ticks_written=int(doc["ticks_written"]),
                        snapshots_written=int(doc["snapshots_written"]),
                        queue_full_waits=int(doc["queue_full_waits"]), error=doc.get("error"))
                except (KeyError, TypeError, ValueError) as exc:
                    raise TickLogError(f"{self.path}: corrupt record {m.where}: expected a "
                                       f"footer message "
                                       f"({type(exc).__name__}: {exc})") from None
        return None

    def ticks(self, start: int = 0) -> Iterator[TickRecord]:
        """Ticks ``>= start`` in order (seeks to ``start`` without decoding earlier ticks)."""
        for i in range(self._first_chunk_reaching(start), len(self._chunks)):
            for m in self._load(i):
                if m.topic == TOPIC_TICK and m.sequence >= start:
                    yield self._tick(m)

    def snapshots(self) -> Iterator[BeliefSnapshot]:
        """Every (complete) belief snapshot, in order."""
        for group in self._snapshot_groups(0):
            snap = self._snapshot(group)
            if snap is not None:
                yield snap

    def snapshot_at_or_before(self, tick: int) -> BeliefSnapshot | None:
        """The latest (complete) belief snapshot taken at ``tick`` or earlier, or None."""
        i = self._first_chunk_reaching(tick + 1)
        while i < len(self._chunks) and self._span(i) is None:
            i += 1  # the search may stop before chunks without ticks
        i = min(i, len(self._chunks) - 1)
        while i >= 0:
            found = [m.sequence for m in self._load(i)
                     if m.topic == TOPIC_BELIEFS and m.sequence <= tick]
            if not found:
                i -= 1
                continue
            tick = max(found)
            while i > 0 and any(m.topic == TOPIC_BELIEFS and m.sequence == tick
                                for m in self._load(i - 1)):
                i -= 1  # the snapshot's first part
            for group in self._snapshot_groups(i):
                if group[0].sequence == tick:
                    snap = self._snapshot(group)
                    if snap is not None:
                        return snap
                    break
            tick -= 1  # incomplete (cut off by a crash): look further back
        return None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> TickLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TickRecord]:
        return self.ticks()

    # ------------------------------------------------------------------------ framing
    def _open(self) -> None:
        f = self._f
        size = os.fstat(f.fileno()).st_size
        self.size = size
        head = f.read(len(_MAGIC))
        if head != _MAGIC:
            if not head:
                found = "the file is empty"
            elif _MAGIC.startswith(head):
                found = f"the file ends after {len(head)} bytes"
            else:
                found = f"found {head[:8].hex(' ')}"
            raise TickLogError(f"{self.path}: not an agentloop tick log: expected the MCAP "
                               f"magic {_MAGIC!r} at offset 0, {found}")
        f.seek(max(size - len(_MAGIC), 0))
        closed = size >= 2 * len(_MAGIC) + _REC.size and f.read(len(_MAGIC)) == _MAGIC
        self._chunks: list[_Chunk] = []
        self._cache: OrderedDict[int, list[_Message]] = OrderedDict()
        self._spans: dict[int, tuple[int, int] | None] = {}
        self._topics: dict[int, str] = {}
        self.truncated = True
        self.truncated_at: int | None = None
        offset = len(_MAGIC)
        while True:
            if offset + _REC.size > size:
                self.truncated_at = offset
                if closed:  # a finished file cannot end inside its records
                    raise self._corrupt(offset, "expected an MCAP record, the file ends")
                break
            f.seek(offset)
            op, length = _REC.unpack(f.read(_REC.size))
            if op not in _OPCODES or (offset == len(_MAGIC)) != (op == _OP_HEADER):
                expected = ("an MCAP header record" if offset == len(_MAGIC)
                            else "an MCAP data record")
                raise self._corrupt(offset, f"expected {expected}, found opcode 0x{op:02x}")
            end = offset + _REC.size + length
            if end > size:
                if closed:
                    raise self._corrupt(offset, f"record of {length} bytes (opcode 0x{op:02x}) "
                                        f"runs past the end of the file ({size} bytes)")
                self.truncated_at = offset
                break
            if op == _OP_CHUNK:
                self._chunks.append(_Chunk(offset, length))
            elif op == _OP_DATA_END:
                self.truncated = not closed
                self.truncated_at = end if not closed else None
                break
            elif op not in (_OP_HEADER, _OP_MESSAGE_INDEX, _OP_SCHEMA, _OP_CHANNEL):
                raise self._corrupt(offset, f"expected a chunk or message index record, "
                                    f"found opcode 0x{op:02x}")
            offset = end
        if not self._chunks:
            raise TickLogError(f"{self.path}: incomplete tick log: the file ends at offset "
                               f"{self.truncated_at} before its header message was complete")
        first = self._load(0)
        if not first or first[0].topic != TOPIC_HEADER:
            raise TickLogError(f"{self.path}: not an agentloop tick log: expected a "
                               f"{TOPIC_HEADER!r} message first, in the chunk at offset "
                               f"{self._chunks[0].offset}")
        self._header = self._read_header(first[0])

    def _corrupt(self, offset: int, what: str) -> TickLogError:
        return TickLogError(f"{self.path}: corrupt record at offset {offset}: {what}")

    def _load(self, i: int) -> list[_Message]:
        """The messages of chunk ``i`` (decompressed and CRC-checked; a few are cached)."""
        cached = self._cache.get(i)
        if cached is not None:
            self._cache.move_to_end(i)
            return cached
        chunk = self._chunks[i]
        self._f.seek(chunk.offset + _REC.size)
        content = self._f.read(chunk.length)
        try:
            messages = self._parse_chunk(chunk, content)
        except TickLogError:
            raise
        except (struct.error, ValueError, IndexError, KeyError, zstandard.ZstdError,
                UnicodeDecodeError, OverflowError) as exc:
            raise self._corrupt(chunk.offset, f"expected an MCAP chunk "
                                f"({type(exc).__name__}: {exc})") from None
        self._cache[i] = messages
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        seqs = [m.sequence for m in messages if m.topic in (TOPIC_TICK, TOPIC_BELIEFS)]
        self._spans[i] = (min(seqs), max(seqs)) if seqs else None
        return messages

    def _parse_chunk(self, chunk: _Chunk, content: bytes) -> list[_Message]:
        _start, _end, usize, crc, clen = _CHUNK_HEAD.unpack_from(content, 0)
        pos = _CHUNK_HEAD.size
        compression = content[pos:pos + clen].decode()
        pos += clen
        (dlen,) = struct.unpack_from("<Q", content, pos)
        pos += 8
        if pos + dlen != len(content):
            raise self._corrupt(chunk.offset, f"chunk data of {dlen} bytes does not fill its "
                                f"record ({len(content) - pos} bytes)")
        data = content[pos:]
        if compression == "zstd":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        elif compression == "":
            raw = data
        else:
            raise self._corrupt(chunk.offset, f"expected zstd chunk compression, found "
                                f"{compression!r}")
        if len(raw) != usize:
            raise self._corrupt(chunk.offset, f"chunk decompresses to {len(raw)} bytes, its "
                                f"header says {usize}")
        if crc and zlib.crc32(raw) != crc:
            raise self._corrupt(chunk.offset, "chunk data fails its CRC check")
        view = memoryview(raw)
        messages: list[_Message] = []
        p = 0
        while p < len(raw):
            op, length = _REC.unpack_from(raw, p)
            body = p + _REC.size
            if body + length > len(raw):
                raise self._corrupt(chunk.offset, f"record at byte {p} of the chunk runs past "
                                    f"its end")
            if op == _OP_CHANNEL:
                cid, _sid, tlen = struct.unpack_from("<HHI", raw, body)
                self._topics[cid] = raw[body + 8:body + 8 + tlen].decode()
            elif op == _OP_MESSAGE:
                cid, seq, _log, _pub = _MSG_HEAD.unpack_from(raw, body)
                topic = self._topics.get(cid)
                if topic is None:
                    raise self._corrupt(chunk.offset, f"message at byte {p} of the chunk is on "
                                        f"channel {cid}, which was never declared")
                messages.append(_Message(
                    topic, seq, view[body + _MSG_HEAD.size:body + length],
                    f"at offset {chunk.offset} (byte {p} of the chunk's data)"))
            elif op != _OP_SCHEMA:
                raise self._corrupt(chunk.offset, f"expected a schema, channel or message "
                                    f"record at byte {p} of the chunk, found opcode 0x{op:02x}")
            p = body + length
        return messages

    def _first_chunk_reaching(self, tick: int) -> int:
        """Index of the first chunk holding a tick or snapshot numbered ``>= tick``
        (``len(chunks)`` if none); binary search, decompressing O(log n) chunks."""
        lo, hi = 0, len(self._chunks)
        while lo < hi:
            mid = (lo + hi) // 2
            j, span = mid, self._span(mid)
            while span is None and j + 1 < hi:
                j += 1
                span = self._span(j)
            if span is None or span[1] >= tick:
                hi = mid
            else:
                lo = j + 1
        return lo

    def _span(self, i: int) -> tuple[int, int] | None:
        if i not in self._spans:
            self._load(i)
        return self._spans[i]

    # ------------------------------------------------------------------------ decoding
    def _json(self, m: _Message) -> Any:
        try:
            return orjson.loads(m.data)
        except orjson.JSONDecodeError as exc:
            raise TickLogError(f"{self.path}: corrupt record {m.where}: expected a JSON "
                               f"{m.topic} message ({exc})") from None

    def _read_header(self, m: _Message) -> TickLogHeader:
        doc = self._json(m)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise TickLogError(f"{self.path}: not an agentloop tick log: expected "
                               f"format {FORMAT_NAME!r} in the header message {m.where}")
        fv = doc.get("format_version")
        if not isinstance(fv, int) or fv > FORMAT_VERSION:
            raise TickLogError(f"{self.path}: tick log format version {fv!r} (header {m.where})"
                               f" is newer than this reader's ({FORMAT_VERSION})")
        try:
            npz = doc.get("model_npz")
            doc["model_npz"] = None if npz is None else base64.b64decode(npz, validate=True)
            return TickLogHeader.from_dict(doc)
        except (TypeError, ValueError, binascii.Error) as exc:
            raise TickLogError(f"{self.path}: corrupt record {m.where}: expected a header "
                               f"message ({type(exc).__name__}: {exc})") from None

    def _tick(self, m: _Message) -> TickRecord:
        doc = self._json(m)
        try:
            return TickRecord(
                tick=int(doc["tick"]), wall_time=float(doc["wall_time"]),
                duration_s=float(doc["duration_s"]), level=int(doc["level"]),
                observations=_decode_array(doc["observations"]),
                actions=_decode_array(doc["actions"]),
                stale_agents=_decode_array(doc["stale_agents"]),
                timings={str(k): math.nan if v is None else float(v)
                         for k, v in doc["timings"].items()},
                failover=_optional_str(doc.get("failover")))
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise TickLogError(f"{self.path}: corrupt record {m.where}: expected a tick "
                               f"message ({type(exc).__name__}: {exc})") from None

    def _snapshot_groups(self, start_chunk: int) -> Iterator[list[_Message]]:
        """Runs of consecutive beliefs messages with the same tick: one snapshot's parts."""
        group: list[_Message] = []
        for i in range(start_chunk, len(self._chunks)):
            for m in self._load(i):
                if m.topic != TOPIC_BELIEFS:
                    continue
                if group and m.sequence != group[0].sequence:
                    yield group
                    group = []
                group.append(m)
        if group:
            yield group

    def _snapshot(self, group: list[_Message]) -> BeliefSnapshot | None:
        """One snapshot from its parts; None if a crash cut it off (the file's last one)."""
        m = group[0]
        try:
            docs = [self._json(part) for part in group]
            parts = int(docs[0]["parts"])
            if [int(d["part"]) for d in docs] != list(range(len(docs))) or len(docs) > parts:
                raise ValueError(f"parts {[d.get('part') for d in docs]} of {parts} found")
            if len(docs) < parts:
                last = self._last_beliefs()
                if self.truncated and last is not None and group[-1].where == last.where:
                    return None
                raise ValueError(f"only {len(docs)} of its {parts} parts found")
            columns = zip(*(d["arrays"] for d in docs), strict=True)
            arrays = []
            for pieces in columns:
                decoded = [_decode_array(a) for a in pieces]
                arr = decoded[0] if parts == 1 else np.concatenate(decoded, axis=0)
                arr.flags.writeable = False
                arrays.append(arr)
            return BeliefSnapshot(tick=int(docs[0]["tick"]), arrays=tuple(arrays),
                                  meta=dict(docs[0]["meta"]))
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise TickLogError(f"{self.path}: corrupt record {m.where}: expected a beliefs "
                               f"message ({type(exc).__name__}: {exc})") from None

    def _last_beliefs(self) -> _Message | None:
        for i in range(len(self._chunks) - 1, -1, -1):
            found = [m for m in self._load(i) if m.topic == TOPIC_BELIEFS]
            if found:
                return found[-1]
        return None

