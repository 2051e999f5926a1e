"""One file of a tick log as the writer thread writes it (:class:`LogFile`): opened and locked,
its header on disk, messages added, its size tracked, finished with a footer."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
from collections import deque
from collections.abc import Mapping

import mcap.writer
import orjson
import zstandard

from engine.errors import TickLogError
from engine.ticklog.files import identity, open_regular
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
    to_json,
)
from engine.ticklog.visual import SCHEMAS as VISUAL_SCHEMAS

ZSTD_LEVEL = 1
"""zstd level of the chunks (see :func:`_private_mcap_writer`)."""
RECORD_BYTES = 31
"""Bytes an MCAP message record adds to its data inside a chunk (opcode, length, header)."""
SUMMARY_BYTES = 1024 + sum(len(orjson.dumps(s)) + 64 for s in _SCHEMAS.values())
"""Bytes ``finish`` adds past the data besides one chunk index per chunk (the schemas and
channels again, statistics, offsets, footer record, magic), with room to spare."""
VISUAL_SUMMARY_BYTES = sum(len(orjson.dumps(s)) + 64 for s in VISUAL_SCHEMAS.values())
"""What the visual topics' schemas and channels add to the summary."""
_GAUGED_AS = dict.fromkeys(VISUAL_SCHEMAS, TOPIC_TICK)
"""Visual messages ride with their tick: their bytes count as the tick's in the gauge."""
RATIOS_KEPT = 8
"""Chunks of each kind whose compression (together) the size estimate uses."""
CHUNK_INDEX_BYTES = 160
"""Bytes of the summary per chunk (its chunk index), with room to spare."""


class _FastZstd:
    """Stands in for the ``zstandard`` module inside our copy of ``mcap.writer``."""

    compress = staticmethod(functools.partial(zstandard.compress, level=ZSTD_LEVEL))


def _private_mcap_writer() -> types.ModuleType:
    """A private copy of ``mcap.writer`` whose chunks are compressed at ``ZSTD_LEVEL``.

    mcap 1.6's Writer calls ``zstandard.compress(chunk)`` (its module's global, default level
    3) and has no option for the level. On 100,000 agents' tick (400 kB of JSON) level 3
    takes 2.2 ms, level 1 0.76 ms for about the same size: the difference between the writer
    thread fitting in 5% of a 100 ms tick or not. The module is loaded a second time under
    its own name, with its own globals, and only that copy's ``zstandard`` is replaced, so
    ``mcap.writer`` itself, and any other MCAP writer in the process, is left as it is. If a
    future mcap drops the global, the copy writes level 3.
    """
    name = "mcap._agentloop_writer"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, mcap.writer.__file__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module          # dataclasses look their module up by name
        spec.loader.exec_module(module)
        if getattr(module, "zstandard", None) is zstandard:
            module.zstandard = _FastZstd  # type: ignore[attr-defined]
    return module


_WRITER = _private_mcap_writer()


class Gauge:
    """Bytes on disk per byte of records of the chunk in progress, for ticks and snapshots
    apart (a chunk holding one kind teaches that kind's ratio; ``ratios`` before that)."""

    def __init__(self, ratios: Mapping[str, float] | None = None) -> None:
        self._first = dict(ratios or {})
        self._seen: dict[str, deque[tuple[int, int]]] = {
            topic: deque(maxlen=RATIOS_KEPT) for topic in (TOPIC_TICK, TOPIC_BELIEFS)}
        self.pending: dict[str, int] = {}     # bytes of records by topic, not yet in a chunk

    def ratio(self, topic: str) -> float:
        seen = self._seen.get(topic)
        if not seen:
            return self._first.get(topic, 1.0)
        return sum(d for d, _ in seen) / sum(r for _, r in seen)

    def ratios(self) -> dict[str, float]:
        return {topic: self.ratio(topic) for topic in self._seen}

    def pending_bytes(self) -> int:
        return int(sum(raw * self.ratio(topic) for topic, raw in self.pending.items()))

    def chunk_written(self, written: int) -> None:
        kinds = [topic for topic, raw in self.pending.items() if raw]
        if len(kinds) == 1 and kinds[0] in self._seen:
            self._seen[kinds[0]].append((written, self.pending[kinds[0]]))
        self.pending.clear()


class LogFile:
    """The MCAP file at ``path`` with ``header`` (at most ``max_header`` bytes) written and
    flushed; TickLogError (and a file this call created removed again) when it cannot be.
    ``visual`` also declares the visual topics (``engine.ticklog.visual``), in the first chunk
    with the others, where every reader finds them before any message.
    ``size`` estimates the bytes the file holds (chunks written, plus the chunk in progress at
    the compression of the last few chunks of its kind, ``ratios`` before those)."""

    def __init__(self, path: str, header: TickLogHeader, *, chunk_size: int,
                 overwrite: bool, max_header: int, ratios: Mapping[str, float] | None = None,
                 visual: bool = False) -> None:
        self.path = path
        self._summary_bytes = SUMMARY_BYTES + (VISUAL_SUMMARY_BYTES if visual else 0)
        self.ticks = 0
        self.snapshots = 0
        self.gauge = Gauge()
        self._chunks = 0
        self._stream, created = open_regular(path, overwrite)
        st = os.fstat(self._stream.fileno())
        self.identity = (st.st_dev, st.st_ino)
        try:
            self._mcap = _WRITER.Writer(self._stream, chunk_size=chunk_size,
                                        compression=_WRITER.CompressionType.ZSTD)
            self._mcap.start(library=f"agentloop {header.engine_version} ({FORMAT_NAME} "
                                     f"v{FORMAT_VERSION})")
            self.channels = {}
            schemas = {**_SCHEMAS, **(VISUAL_SCHEMAS if visual else {})}
            for topic, schema in schemas.items():
                sid = self._mcap.register_schema(schema["title"], "jsonschema",
                                                 orjson.dumps(schema))
                self.channels[topic] = self._mcap.register_channel(topic, "json", sid)
            payload = to_json(encode_header(header))
            if len(payload) > max_header:
                raise TickLogError(f"the header is {len(payload):,} bytes (its model, mostly), "
                                   f"more than a tick log carries ({max_header:,})")
            t_ns = int(header.created_unix * 1e9)  # type: ignore[operator]
            self.add(TOPIC_HEADER, t_ns, payload, 0)
            self.flush()  # the header is on disk before the first tick
            self.gauge = Gauge(ratios)
            self.header_bytes = self._stream.tell()
        except Exception as exc:
            self._stream.close()
            if created:      # a file that was there before is never removed (nor replaced)
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise TickLogError(f"cannot write tick log {path!r}: {exc}") from exc
            raise TickLogError(f"cannot write the header of tick log {path!r}: {exc}"
                               ) from exc

    @property
    def size(self) -> int:
        """Estimated bytes of the file were it finished now (summary included)."""
        return (self._stream.tell() + self.gauge.pending_bytes() + self._summary_bytes
                + CHUNK_INDEX_BYTES * (self._chunks + 1))

    def next_size(self, snapshot_bytes: int) -> int:
        """Estimated bytes of a file of the same header opening with a snapshot of
        ``snapshot_bytes`` bytes of arrays, were it finished then."""
        ratio = self.gauge.ratio(TOPIC_BELIEFS)
        return (self.header_bytes + int(snapshot_bytes * 4 / 3 * ratio) + self._summary_bytes
                + 2 * CHUNK_INDEX_BYTES)

    def add(self, topic: str, t_ns: int, payload: bytes, sequence: int) -> None:
        before = self._stream.tell()
        kind = _GAUGED_AS.get(topic, topic)
        self.gauge.pending[kind] = self.gauge.pending.get(kind, 0) + len(payload) + RECORD_BYTES
        self._mcap.add_message(self.channels[topic], t_ns, payload, t_ns, sequence)
        self._chunk_written(before)

    def flush(self) -> None:
        """End the chunk in progress and flush the file (no fsync)."""
        before = self._stream.tell()
        self._mcap.flush()
        self._chunk_written(before)

    def _chunk_written(self, before: int) -> None:
        written = self._stream.tell() - before
        if written and self.gauge.pending:
            self.gauge.chunk_written(written)
            self._chunks += 1

    def same_file(self) -> bool:
        """Whether ``path`` still names this file (False once removed or replaced)."""
        return identity(self.path) == self.identity

    def finish(self, footer: TickLogFooter, t_ns: int, sequence: int) -> bool:
        """Write ``footer``, finish and close the file; whether ``path`` still named it (checked
        before the inode can be reused)."""
        self.add(TOPIC_FOOTER, t_ns, to_json(encode_footer(footer)), sequence)
        self._mcap.finish()
        there = self.same_file()
        self._stream.close()
        return there

    def abandon(self) -> bool:
        """Close the file as it is (after an error: no footer); whether ``path`` named it."""
        there = self.same_file()
        self._stream.close()
        return there
