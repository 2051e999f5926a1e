"""Chunk claims: which worker steps which chunk of the workers' slices in a tick.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

import numpy as np
import posix_ipc

from engine.runtime.shm import Run

#: the columns of a slice's row in the claims table
FRONT, BACK, FIRST, NEXT = range(4)


def _chunk_counts(slices: tuple[tuple[tuple[int, int], ...], ...], chunk: int) -> np.ndarray:
    return np.array([[-(-(hi - lo) // chunk) for lo, hi in worker] for worker in slices],
                    dtype=np.int64).reshape(len(slices), -1)


class ChunkClaims:
    """The claims table, ``(workers, populations, 4)`` int64 (taken from the front, taken
    from the back, this tick's first chunk, the next tick's first chunk), the chunk counts and,
    across processes, one counting semaphore per slice."""

    def __init__(self, table: np.ndarray, n_chunks: np.ndarray,
                 counters: list[list[posix_ipc.Semaphore]] | None) -> None:
        self.table = table
        self.n_chunks = n_chunks
        self.counters = counters

    @staticmethod
    def local(slices: tuple[tuple[tuple[int, int], ...], ...], chunk: int) -> ChunkClaims:
        """Claims for the master process stepping everything itself (no helpers)."""
        n_chunks = _chunk_counts(slices, chunk)
        return ChunkClaims(np.zeros((*n_chunks.shape, 4), dtype=np.int64), n_chunks, None)

    @staticmethod
    def create(run: Run, slices: tuple[tuple[tuple[int, int], ...], ...],
               chunk: int) -> ChunkClaims:
        """The shared table and semaphores of a run's workers (master)."""
        n_chunks = _chunk_counts(slices, chunk)
        table = run.create_array("claims", (*n_chunks.shape, 4), "int64")
        counters = [[run.create_semaphore(f"claim-{w}-{p}", int(n_chunks[w, p]))
                     for p in range(n_chunks.shape[1])] for w in range(n_chunks.shape[0])]
        return ChunkClaims(table, n_chunks, counters)

    @staticmethod
    def attach(run: Run, slices: tuple[tuple[tuple[int, int], ...], ...],
               chunk: int) -> ChunkClaims:
        """The same table and semaphores, seen from a worker."""
        n_chunks = _chunk_counts(slices, chunk)
        table = run.attach_array("claims", (*n_chunks.shape, 4), "int64")
        counters = [[run.attach_semaphore(f"claim-{w}-{p}") for p in range(n_chunks.shape[1])]
                    for w in range(n_chunks.shape[0])]
        return ChunkClaims(table, n_chunks, counters)

    def helps(self, worker: int) -> int:
        """The worker whose chunks ``worker`` takes when its own are done (the next one)."""
        return (worker + 1) % len(self.table)

    @property
    def helpers(self) -> bool:
        """Whether workers help each other (several worker processes)."""
        return self.counters is not None and len(self.counters) > 1

    def start_tick(self) -> None:
        """Between ticks (no worker running): every chunk untaken again, each slice starting
        where its last cut left it."""
        table = self.table
        table[:, :, FIRST] = table[:, :, NEXT]
        if self.counters is not None:
            for w, row in enumerate(self.counters):
                for p, counter in enumerate(row):
                    for _ in range(int(self.n_chunks[w, p]) - counter.value):
                        counter.release()
        table[:, :, FRONT] = 0
        table[:, :, BACK] = 0

    def _take(self, worker: int, population: int) -> bool:
        if self.counters is None:
            row = self.table[worker, population]
            return bool(row[FRONT] + row[BACK] < self.n_chunks[worker, population])
        try:
            self.counters[worker][population].acquire(0)
        except posix_ipc.BusyError:
            return False
        return True

    def take_front(self, worker: int, population: int) -> int:
        """The owner's next chunk of its slice (index within the slice), or -1 if none is
        left."""
        if not self._take(worker, population):
            return -1
        row = self.table[worker, population]
        position = int(row[FRONT])
        row[FRONT] = position + 1
        return (int(row[FIRST]) + position) % int(self.n_chunks[worker, population])

    def take_back(self, worker: int, population: int) -> int:
        """A helper's next chunk of ``worker``'s slice, taken from the back, or -1."""
        if not self._take(worker, population):
            return -1
        row = self.table[worker, population]
        row[BACK] += 1
        n = int(self.n_chunks[worker, population])
        return (int(row[FIRST]) + n - int(row[BACK])) % n

    def cut(self, worker: int, population: int) -> None:
        """The owner stopped at the deadline: the next tick starts at its first chunk not
        taken."""
        row = self.table[worker, population]
        n = int(self.n_chunks[worker, population])
        row[NEXT] = (int(row[FIRST]) + int(row[FRONT])) % n
