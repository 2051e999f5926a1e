"""Reading a tick log that may be a rotated set of files (:class:`TickLogSet`) as one log.

A log written as one file reads exactly as :class:`TickLogReader` reads it. The set format,
and how a set with files rotated away or missing is read: docs/ticklog.md.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator

from engine.errors import TickLogError
from engine.ticklog.files import base_of, member_path, members_present
from engine.ticklog.reader import TickLogReader
from engine.ticklog.schema import BeliefSnapshot, TickLogFooter, TickLogHeader, TickRecord

_OPEN_FILES = 4
"""Most files of a set held open at once (the most recently read)."""


class TickLogSet:
    """The tick log at ``path``, read across the files of its set when it is one.

    ``path`` names a log's first file (``run.mcap``; when it was rotated away, the set is read
    from its first file still present) or any later file (``run.004.mcap``: read from
    there). ``files`` are the files read, in order; ``rotated_away`` the set's files before
    them, gone, when ``path`` names its first; ``starts_mid_run`` says the first file read is
    not the set's first, so replay starts from the belief snapshot it opens with. A missing
    file between two present ones raises :class:`TickLogError` naming it; so does a file of
    another run inside the set. ``missing_next`` names the file the last one says the log
    continues in when that file is absent (the set was cut off). The methods are
    :class:`TickLogReader`'s.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._readers: OrderedDict[int, TickLogReader] = OrderedDict()
        self.rotated_away: list[str] = []
        self.missing_next: str | None = None
        self.current_file = self.path
        try:
            self._resolve()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------ resolving
    def _resolve(self) -> None:
        if os.path.lexists(self.path) or not self._later_files_of(self.path):
            first = TickLogReader(self.path)     # its own errors, as for any single file
            base = (None if first.header.set_id is None
                    else base_of(self.path, first.header.set_index))
        else:
            base = self.path
            present = members_present(base)
            first_path = next(iter(present.values()))
            first = TickLogReader(first_path)
            if first.header.set_id is None or member_path(
                    base, first.header.set_index) != first_path:
                first.close()
                raise TickLogError(f"{self.path}: no such tick log, and {first_path} is not "
                                   f"a later file of a set written there")
        self.files = [first.path]
        self._readers[0] = first
        self.first_index = first.header.set_index
        if base is None:
            return
        present = members_present(base)
        if base == self.path:         # the first files asked for are gone: rotated away
            self.rotated_away = [member_path(base, i) for i in range(self.first_index)]
        index = self.first_index + 1
        later = [i for i in present if i > self.first_index]
        for i in later:
            if i != index:
                if self._same_set(present[i]):
                    raise TickLogError(
                        f"{self.path}: tick log set is missing {member_path(base, index)} "
                        f"(between {self.files[-1]} and {present[i]})")
                break
            self.files.append(present[i])
            index += 1
        last = self._reader(len(self.files) - 1)
        footer = last.footer
        if footer is not None and footer.next_file:
            self.missing_next = os.path.join(os.path.dirname(last.path), footer.next_file)

    @staticmethod
    def _later_files_of(base: str) -> bool:
        return any(i > 0 for i in members_present(base))

    def _same_set(self, path: str) -> bool:
        try:
            with TickLogReader(path) as reader:
                return reader.header.set_id == self.header.set_id
        except TickLogError:
            return True                          # unreadable: treat as a file of the set

    def _reader(self, i: int) -> TickLogReader:
        reader = self._readers.get(i)
        if reader is not None:
            self._readers.move_to_end(i)
            return reader
        reader = TickLogReader(self.files[i])
        if reader.header.set_id != self.header.set_id:
            reader.close()
            raise TickLogError(f"{self.path}: {self.files[i]} belongs to another run's tick "
                               f"log (set {reader.header.set_id}, not {self.header.set_id})")
        self._readers[i] = reader
        while len(self._readers) > _OPEN_FILES:
            oldest = next(k for k in self._readers if k != 0)    # the first stays open
            self._readers.pop(oldest).close()
        return reader

    # -------------------------------------------------------------------------- public
    @property
    def header(self) -> TickLogHeader:
        return self._readers[0].header if 0 in self._readers else self._reader(0).header

    @property
    def starts_mid_run(self) -> bool:
        """Whether the first file read is not the set's first (replay starts from the
        snapshot it opens with)."""
        return self.first_index > 0

    @property
    def start_tick(self) -> int:
        """The first tick replay can start at: 0, or for a set read from a later file the tick
        after the snapshot that file opens with (its first tick when it has none)."""
        if not self.starts_mid_run:
            return 0
        first = self._reader(0)
        snapshot = next(first.snapshots(), None)
        if snapshot is not None:
            return snapshot.tick + 1
        tick = next(first.ticks(), None)
        return 0 if tick is None else tick.tick

    @property
    def size(self) -> int:
        total = 0
        for path in self.files:
            try:
                total += os.path.getsize(path)
            except OSError:
                pass
        return total

    @property
    def truncated(self) -> bool:
        return self._reader(len(self.files) - 1).truncated

    @property
    def truncated_at(self) -> int | None:
        return self._reader(len(self.files) - 1).truncated_at

    @property
    def last_tick(self) -> int | None:
        for i in range(len(self.files) - 1, -1, -1):
            tick = self._reader(i).last_tick
            if tick is not None:
                return tick
        return None

    @property
    def footer(self) -> TickLogFooter | None:
        """The last file's footer with the counts of every file read (None when the last
        file has none: a crash, or a file still being written)."""
        last = self._reader(len(self.files) - 1).footer
        if last is None or len(self.files) == 1:
            return last
        footers = [self._reader(i).footer for i in range(len(self.files) - 1)]
        ticks = sum(f.ticks_written for f in footers if f is not None)
        snaps = sum(f.snapshots_written for f in footers if f is not None)
        return TickLogFooter(totals=last.totals, ticks_written=ticks + last.ticks_written,
                             snapshots_written=snaps + last.snapshots_written,
                             queue_full_waits=last.queue_full_waits, error=last.error,
                             next_file=last.next_file)

    def ticks(self, start: int = 0) -> Iterator[TickRecord]:
        """Ticks ``>= start`` in order, across the files (``current_file`` names the file
        the last one came from)."""
        for i in range(len(self.files)):
            reader = self._reader(i)
            last = reader.last_tick
            if last is not None and last < start:
                continue
            for record in reader.ticks(start):
                self.current_file = reader.path
                yield record

    def snapshots(self) -> Iterator[BeliefSnapshot]:
        """Every (complete) belief snapshot, in order (one per tick: a file's opening
        snapshot repeats a tick the previous file may also have one of)."""
        last = -1
        for i in range(len(self.files)):
            for snapshot in self._reader(i).snapshots():
                if snapshot.tick > last:
                    last = snapshot.tick
                    yield snapshot

    def snapshot_at_or_before(self, tick: int) -> BeliefSnapshot | None:
        """The latest (complete) belief snapshot taken at ``tick`` or earlier, or None."""
        for i in range(len(self.files) - 1, -1, -1):
            snapshot = self._reader(i).snapshot_at_or_before(tick)
            if snapshot is not None:
                return snapshot
        return None

    def close(self) -> None:
        while self._readers:
            self._readers.popitem()[1].close()

    def __enter__(self) -> TickLogSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TickRecord]:
        return self.ticks()


def open_log(path: str | os.PathLike[str]) -> TickLogSet:
    """The tick log at ``path`` (one file or a rotated set), ready to read."""
    return TickLogSet(path)
