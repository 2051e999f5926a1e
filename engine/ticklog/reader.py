"""Reading a tick log (:class:`TickLogReader`), also one cut off by a crash."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO

from engine.errors import TickLogError
from engine.ticklog.scan import Chunk, Message, read_chunk, scan_records
from engine.ticklog.schema import (
    TOPIC_BELIEFS,
    TOPIC_FOOTER,
    TOPIC_HEADER,
    TOPIC_TICK,
    BeliefSnapshot,
    TickLogFooter,
    TickLogHeader,
    TickRecord,
    decode_footer,
    decode_header,
    decode_snapshot,
    decode_tick,
)

_CACHED_CHUNKS = 4
_CACHED_BYTES = 64 << 20
"""Chunks are evicted (oldest first, the newest kept) while the cache holds more than this."""


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
                return decode_footer(m.data, self.path, m.where)
        return None

    def ticks(self, start: int = 0) -> Iterator[TickRecord]:
        """Ticks ``>= start`` in order (seeks to ``start`` without decoding earlier ticks)."""
        for i in range(self._first_chunk_reaching(start), len(self._chunks)):
            for m in self._load(i):
                if m.topic == TOPIC_TICK and m.sequence >= start:
                    yield decode_tick(m.data, self.path, m.where)

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

    # ------------------------------------------------------------------------ chunks
    def _open(self) -> None:
        size = os.fstat(self._f.fileno()).st_size
        self.size = size
        framing = scan_records(self._f, self.path, size)
        self._chunks: list[Chunk] = framing.chunks
        self._cache: OrderedDict[int, list[Message]] = OrderedDict()
        self._cached_bytes: dict[int, int] = {}
        self._spans: dict[int, tuple[int, int] | None] = {}
        self._topics: dict[int, str] = {}
        self.truncated = framing.truncated
        self.truncated_at: int | None = framing.truncated_at
        if not self._chunks:
            raise TickLogError(f"{self.path}: incomplete tick log: the file ends at offset "
                               f"{self.truncated_at} before its header message was complete")
        first = self._load(0)
        if not first or first[0].topic != TOPIC_HEADER:
            raise TickLogError(f"{self.path}: not an agentloop tick log: expected a "
                               f"{TOPIC_HEADER!r} message first, in the chunk at offset "
                               f"{self._chunks[0].offset}")
        self._header = decode_header(first[0].data, self.path, first[0].where)

    def _load(self, i: int) -> list[Message]:
        """The messages of chunk ``i`` (decompressed and CRC-checked; a few are cached)."""
        cached = self._cache.get(i)
        if cached is not None:
            self._cache.move_to_end(i)
            return cached
        messages = read_chunk(self._f, self._chunks[i], self._topics, self.path)
        self._cache[i] = messages
        self._cached_bytes[i] = sum(len(m.data) for m in messages)
        while len(self._cache) > 1 and (len(self._cache) > _CACHED_CHUNKS or sum(
                self._cached_bytes[k] for k in self._cache) > _CACHED_BYTES):
            self._cached_bytes.pop(self._cache.popitem(last=False)[0])
        seqs = [m.sequence for m in messages if m.topic in (TOPIC_TICK, TOPIC_BELIEFS)]
        self._spans[i] = (min(seqs), max(seqs)) if seqs else None
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

    # ------------------------------------------------------------------------ snapshots
    def _snapshot_groups(self, start_chunk: int) -> Iterator[list[Message]]:
        """Runs of consecutive beliefs messages with the same tick: one snapshot's parts."""
        group: list[Message] = []
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

    def _snapshot(self, group: list[Message]) -> BeliefSnapshot | None:
        """One snapshot from its parts; None if a crash cut it off (the file's last one)."""
        return decode_snapshot([(m.data, m.where) for m in group], self.path,
                               cut_off=lambda: self._ends_the_cut_file(group[-1]))

    def _ends_the_cut_file(self, m: Message) -> bool:
        """Whether ``m`` is the last beliefs message of a truncated file."""
        last = self._last_beliefs()
        return self.truncated and last is not None and m.where == last.where

    def _last_beliefs(self) -> Message | None:
        for i in range(len(self._chunks) - 1, -1, -1):
            found = [m for m in self._load(i) if m.topic == TOPIC_BELIEFS]
            if found:
                return found[-1]
        return None
