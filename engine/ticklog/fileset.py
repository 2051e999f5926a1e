"""The files of one tick log as its writer thread writes them (:class:`FileSet`): the current
file, the next of a rotated set, the oldest removed past ``keep``, and which of those kept were
removed or replaced by someone else. The set format: docs/ticklog.md."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

from engine.errors import TickLogError
from engine.ticklog.files import identity, member_path
from engine.ticklog.mcapfile import LogFile
from engine.ticklog.schema import TickLogFooter, TickLogHeader


class FileSet:
    """Opens ``base`` with ``header`` (TickLogError as :class:`LogFile`); :meth:`rotate` goes
    on in the next file of the set, keeping at most ``keep`` files (None: all). ``visual``
    declares the visual topics in every file."""

    def __init__(self, base: str, header: TickLogHeader, *, chunk_size: int, overwrite: bool,
                 max_header: int, keep: int | None, visual: bool = False) -> None:
        self.base, self.header, self.keep = base, header, keep
        self._options = {"chunk_size": chunk_size, "overwrite": overwrite,
                         "max_header": max_header, "visual": visual}
        self.files: list[str] = []
        """The files written and kept, oldest first."""
        self.rotated_away: list[str] = []
        """The files removed past ``keep``, oldest first."""
        self._identities: dict[str, tuple[int, int]] = {}
        self._lost: list[str] = []          # kept files gone or replaced, noticed so far
        self._closed = False
        self.current = self._open(base, header, None)

    def _open(self, path: str, header: TickLogHeader, ratios: dict[str, float] | None
              ) -> LogFile:
        file = LogFile(path, header, ratios=ratios, **self._options)  # type: ignore[arg-type]
        self.files.append(path)
        self._identities[path] = file.identity
        return file

    def footer(self, totals: Mapping[str, Any], queue_full_waits: int, error: str | None,
               next_file: str | None) -> TickLogFooter:
        """The current file's footer: its own counts, the caller's ``totals``."""
        return TickLogFooter(totals=dict(totals), ticks_written=self.current.ticks,
                             snapshots_written=self.current.snapshots,
                             queue_full_waits=queue_full_waits, error=error,
                             next_file=next_file)

    def rotate(self, sequence: int, queue_full_waits: int) -> None:
        """Open the set's next file (its header first), then finish the current one naming
        it, then remove the oldest files past ``keep``. If the next cannot be opened the
        current one is finished with the error in its footer, and TickLogError raised."""
        old = self.current
        index = len(self.files) + len(self.rotated_away)
        path = member_path(self.base, index)
        header = dataclasses.replace(self.header, set_index=index, created_unix=time.time())
        try:
            new = self._open(path, header, old.gauge.ratios())
        except TickLogError as exc:
            self._finish(self.footer({}, queue_full_waits, str(exc), None), sequence)
            raise
        if not old.finish(self.footer({}, queue_full_waits, None, os.path.basename(path)),
                          time.time_ns(), sequence):
            self._lost.append(old.path)
        self.current = new
        while self.keep is not None and len(self.files) > self.keep:
            oldest = self.files.pop(0)
            if identity(oldest) == self._identities.pop(oldest):
                try:
                    os.unlink(oldest)
                except OSError:
                    pass
            self.rotated_away.append(oldest)

    def finish(self, footer: TickLogFooter, sequence: int) -> None:
        """Finish the last file with ``footer``, and check every kept file is in its place."""
        self._finish(footer, sequence)

    def _finish(self, footer: TickLogFooter, sequence: int) -> None:
        if not self.current.finish(footer, time.time_ns(), sequence):
            self._lost.append(self.current.path)
        self._close()

    def abandon(self) -> None:
        """Close the current file as it is (after an error: no footer)."""
        if not self._closed:
            if not self.current.abandon():
                self._lost.append(self.current.path)
            self._close()

    def _close(self) -> None:
        self._closed = True
        self._lost += [p for p in self.files if p not in self._lost
                       and p != self.current.path and identity(p) != self._identities[p]]

    def lost_files(self) -> list[str]:
        """The kept files whose path no longer names them (removed or replaced): as noticed
        at rotations and, once closed, at closing; the current file as it is now."""
        if self._closed:
            return [p for p in self.files if p in self._lost]
        current = [] if self.current.same_file() else [self.current.path]
        return [p for p in self.files if p in self._lost] + current
