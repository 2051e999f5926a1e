"""Chunk claims: which worker steps which chunk of the workers' slices in a tick, and where
each slice's next tick starts (a chunk may be cut part-way).

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import numpy as np
import posix_ipc

from engine.runtime.shm import Run

#: the columns of a slice's row in the claims table: pieces taken from the front and from the
#: back; this tick's and the next tick's first chunk, and the agent each starts at within it;
#: whether the owner cut the slice this tick; where a helper stopped (+1; 0: nowhere)
FRONT, BACK, FIRST, NEXT, OFFSET, NEXT_OFFSET, CUT, HELPER_STOP = range(8)
COLUMNS = 8
#: the weight of the older ticks in a worker's measured pace
PACE_KEEP = 0.7


def _slice_lengths(slices: tuple[tuple[tuple[int, int], ...], ...]) -> np.ndarray:
    return np.array([[hi - lo for lo, hi in worker] for worker in slices],
                    dtype=np.int64).reshape(len(slices), -1)


class ChunkClaims:
    """The claims table, ``(workers, populations, COLUMNS)`` int64, the slices' lengths and
    chunk counts and, across processes, one counting semaphore per slice.

    A tick's pieces of a slice are its chunks in turn from ``FIRST``; when the tick starts
    ``OFFSET`` agents into that chunk, its first piece is the rest of the chunk and one more
    piece, its head, comes last. :meth:`take_front` and :meth:`take_back` return a piece as
    its chunk's index, the head of a cut chunk as its index plus the chunk count;
    :meth:`span` gives a piece's agents."""

    def __init__(self, table: np.ndarray, lengths: np.ndarray, chunk: int,
                 counters: list[list[posix_ipc.Semaphore]] | None) -> None:
        self.table = table
        self.lengths = lengths
        self.chunk = chunk
        self.n_chunks = -(-lengths // chunk)
        self.counters = counters
        #: this process's own measure (not shared) of each worker's stepping time per agent
        #: over its last ticks, a moving average (0 until measured): it sizes the blocks
        self.pace = np.zeros(len(lengths))

    @staticmethod
    def local(slices: tuple[tuple[tuple[int, int], ...], ...], chunk: int) -> ChunkClaims:
        """Claims for the master process stepping everything itself (no helpers)."""
        lengths = _slice_lengths(slices)
        return ChunkClaims(np.zeros((*lengths.shape, COLUMNS), dtype=np.int64), lengths,
                           chunk, None)

    @staticmethod
    def create(run: Run, slices: tuple[tuple[tuple[int, int], ...], ...],
               chunk: int) -> ChunkClaims:
        """The shared table and semaphores of a run's workers (master)."""
        lengths = _slice_lengths(slices)
        table = run.create_array("claims", (*lengths.shape, COLUMNS), "int64")
        n_chunks = -(-lengths // chunk)
        counters = [[run.create_semaphore(f"claim-{w}-{p}", int(n_chunks[w, p]))
                     for p in range(lengths.shape[1])] for w in range(lengths.shape[0])]
        return ChunkClaims(table, lengths, chunk, counters)

    @staticmethod
    def attach(run: Run, slices: tuple[tuple[tuple[int, int], ...], ...],
               chunk: int) -> ChunkClaims:
        """The same table and semaphores, seen from a worker."""
        lengths = _slice_lengths(slices)
        table = run.attach_array("claims", (*lengths.shape, COLUMNS), "int64")
        counters = [[run.attach_semaphore(f"claim-{w}-{p}") for p in range(lengths.shape[1])]
                    for w in range(lengths.shape[0])]
        return ChunkClaims(table, lengths, chunk, counters)

    def helps(self, worker: int) -> int:
        """The worker whose chunks ``worker`` takes when its own are done (the next one)."""
        return (worker + 1) % len(self.table)

    @property
    def helpers(self) -> bool:
        """Whether workers help each other (several worker processes)."""
        return self.counters is not None and len(self.counters) > 1

    def note_pace(self, worker: int, seconds: float, agents: int) -> None:
        """``worker`` stepped ``agents`` agents in ``seconds`` (wall) this tick."""
        if agents > 0 and seconds > 0.0:
            pace = seconds / agents
            old = float(self.pace[worker])
            self.pace[worker] = pace if old == 0.0 else PACE_KEEP * old + (1.0 - PACE_KEEP) * pace

    def pieces(self, worker: int, population: int) -> int:
        """How many pieces the slice has this tick: its chunks, and the head of the first one
        when the tick starts part-way into it."""
        return int(self.n_chunks[worker, population]) + int(
            self.table[worker, population, OFFSET] > 0)

    def start_tick(self) -> None:
        """Between ticks (no worker running): every piece untaken again, each slice starting
        where its owner's cut left it or, when its owner was not cut, where a helper stopped
        (else where it started)."""
        table = self.table
        helped = (table[:, :, CUT] == 0) & (table[:, :, HELPER_STOP] > 0)
        stop = table[:, :, HELPER_STOP] - 1
        table[:, :, NEXT] = np.where(helped, stop // self.chunk, table[:, :, NEXT])
        table[:, :, NEXT_OFFSET] = np.where(helped, stop % self.chunk, table[:, :, NEXT_OFFSET])
        table[:, :, FIRST] = table[:, :, NEXT]
        table[:, :, OFFSET] = table[:, :, NEXT_OFFSET]
        table[:, :, FRONT] = 0
        table[:, :, BACK] = 0
        table[:, :, CUT] = 0
        table[:, :, HELPER_STOP] = 0
        if self.counters is not None:
            for w, row in enumerate(self.counters):
                for p, counter in enumerate(row):
                    for _ in range(self.pieces(w, p) - counter.value):
                        counter.release()

    def _take(self, worker: int, population: int) -> bool:
        if self.counters is None:
            row = self.table[worker, population]
            return bool(row[FRONT] + row[BACK] < self.pieces(worker, population))
        try:
            self.counters[worker][population].acquire(0)
        except posix_ipc.BusyError:
            return False
        return True

    def _piece(self, worker: int, population: int, position: int) -> int:
        """The piece at ``position`` in this tick's order (see the class docstring)."""
        row = self.table[worker, population]
        n = int(self.n_chunks[worker, population])
        if position == n:
            return int(row[FIRST]) + n                    # the head of the first chunk
        return (int(row[FIRST]) + position) % n

    def take_front(self, worker: int, population: int) -> int:
        """The owner's next piece of its slice, or -1 if none is left."""
        if not self._take(worker, population):
            return -1
        row = self.table[worker, population]
        position = int(row[FRONT])
        row[FRONT] = position + 1
        return self._piece(worker, population, position)

    def take_back(self, worker: int, population: int) -> int:
        """A helper's next piece of ``worker``'s slice, taken from the back, or -1."""
        if not self._take(worker, population):
            return -1
        row = self.table[worker, population]
        row[BACK] += 1
        return self._piece(worker, population,
                           self.pieces(worker, population) - int(row[BACK]))

    def span(self, worker: int, population: int, piece: int) -> tuple[int, int]:
        """The agents ``(start, end)`` of a piece, counted from the start of the slice."""
        row = self.table[worker, population]
        n, chunk = int(self.n_chunks[worker, population]), self.chunk
        index = piece % n
        start = index * chunk
        if piece >= n:
            return start, start + int(row[OFFSET])
        if index == int(row[FIRST]):
            start += int(row[OFFSET])
        return start, min(int(self.lengths[worker, population]), index * chunk + chunk)

    def cut(self, worker: int, population: int, at: int | None = None) -> None:
        """The owner stopped at the deadline: the next tick starts at agent ``at`` of the
        slice (its first agent not stepped), by default at its first piece not taken."""
        row = self.table[worker, population]
        if at is not None:
            row[NEXT], row[NEXT_OFFSET] = divmod(at % int(self.lengths[worker, population]),
                                                 self.chunk)
        elif 0 < int(row[FRONT]) < self.pieces(worker, population):
            row[NEXT] = self._piece(worker, population, int(row[FRONT])) % int(
                self.n_chunks[worker, population])
            row[NEXT_OFFSET] = 0
        else:                                   # nothing taken, or everything: no move
            row[NEXT], row[NEXT_OFFSET] = row[FIRST], row[OFFSET]
        row[CUT] = 1

    def helper_stopped(self, worker: int, population: int, at: int) -> None:
        """A helper stopped part-way into a piece of ``worker``'s slice at the deadline: when
        the owner is not cut this tick, the next tick starts at agent ``at`` of the slice."""
        self.table[worker, population, HELPER_STOP] = at + 1
