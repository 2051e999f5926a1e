"""Worker: waits for a tick, runs the kernels on its slice of agents in chunks, signals done.

A worker owns one contiguous slice of every population and steps them in population order,
then helps the next worker with the chunks it has not reached (:mod:`engine.claims`).
``process_tick`` is also what ``Engine(workers=0)`` runs in the master process, so both paths
compute the same numbers. With a deadline, chunks are stepped in blocks and the deadline is
checked between blocks; agents not reached keep their last action and are flagged stale for
the tick.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numba
import numpy as np
import posix_ipc

from engine.kernels.numba import step as numba_step
from engine.runtime import faults
from engine.runtime.claims import ChunkClaims
from engine.runtime.degrade import (
    FULL,
    MAX_LEVEL,
    ROTATING_FRACTION,
    STALE_ACTIONS,
    block_size,
)
from engine.runtime.journal import Journal
from engine.runtime.pool import ArrayPool
from engine.runtime.shared_state import ControlBlock, SharedState, StateSpec
from engine.runtime.shm import Run
from engine.runtime.stepping import step_rows

#: how often an idle worker wakes to check that its master still lives (seconds)
IDLE_POLL_S = 0.5
#: with a deadline, the share of the time left before it that one kernel call may be sized to
#: take, at the measured pace (blocks shrink as the deadline nears)
BLOCK_SHARE = 0.5
#: the semaphore worker 0 opens once it has warmed up: the others warm up after it, loading the
#: kernels it compiled from Numba's cache instead of compiling the same code beside it
WARM_GATE = "warm-gate"


def scratch_pool(specs: tuple[StateSpec, ...], threads: int, chunk: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread kernel scratch and the decoded beliefs of one chunk (flat), from one pool,
    sized for the largest of ``specs`` (populations are stepped one after another)."""
    dtype = specs[0].dtype
    if any(spec.dtype != dtype for spec in specs):
        raise ValueError("scratch_pool: every population of an engine uses one dtype")
    float_size = max(spec.float_scratch for spec in specs)
    int_size = max(spec.int_scratch for spec in specs)
    belief_size = chunk * max(spec.state_size for spec in specs) if any(
        spec.quantized for spec in specs) else 0
    requests = [((threads, float_size), "float64"), ((threads, int_size), "int64"),
                ((belief_size,), dtype)]
    pool = ArrayPool(ArrayPool.bytes_for(requests))
    return (pool.borrow("fscratch", (threads, float_size), "float64"),
            pool.borrow("iscratch", (threads, int_size), "int64"),
            pool.borrow("beliefs", (belief_size,), dtype))


def process_tick(states: tuple[SharedState, ...], slices: tuple[tuple[int, int], ...],
                 chunk: int, tick: int, deadline: float, fscratch: np.ndarray,
                 iscratch: np.ndarray, beliefs: np.ndarray, claims: ChunkClaims,
                 level: int = FULL, journal: Journal | None = None, worker: int = 0,
                 order: np.ndarray | None = None,
                 helped: tuple[tuple[int, int], ...] = (), margin: float = 0.0) -> int:
    """Step this worker's slice of every population, in order, then help; return how many
    agents ran.

    Every agent starts the tick flagged stale (the master sets the flags before releasing the
    workers); a block's flags are cleared when its results are written. A population whose turn
    comes after the deadline stays stale for the tick as a whole. ``order`` (one int kept by
    the caller between ticks) is which population goes first: after a cut, the one after the
    population the deadline cut, so the populations take turns going first and none is left
    behind tick after tick. ``helped`` is the next worker's slices: with its own done, this
    worker takes that worker's chunks from the back until none is left or the deadline passes
    (:mod:`engine.claims`). A worker always steps its first block (every tick makes
    progress), every other one only while ``margin`` seconds (``DegradeController.margin_s``,
    learnt from the ticks' tails) are left before the deadline: a tick ends near its deadline,
    not a block after it. The time per agent the tick took is noted in ``claims`` (it sizes
    the next tick's blocks).
    """
    ran = 0
    began = time.monotonic()
    soft = deadline - margin
    n = len(states)
    first = int(order[0]) % n if order is not None else 0
    for k in range(n):
        p = (first + k) % n
        lo, hi = slices[p]
        if k > 0 and hi > lo and time.monotonic() > soft:
            break
        ran += process_slice(states[p], lo, hi, chunk, tick, deadline, fscratch, iscratch,
                             beliefs, claims, level, journal, p, worker, margin, first=not ran)
        if order is not None and time.monotonic() > soft:
            order[0] = p + 1                 # the next tick starts with the one after
            break
    if helped and claims.helpers:
        ran += help_next_worker(states, helped, chunk, tick, soft, fscratch, iscratch,
                                beliefs, claims, level, journal, claims.helps(worker), worker)
    if soft != float("inf"):
        claims.note_pace(worker, time.monotonic() - began, ran)
    return ran


def process_slice(state: SharedState, lo: int, hi: int, chunk: int, tick: int,
                  deadline: float, fscratch: np.ndarray, iscratch: np.ndarray,
                  beliefs: np.ndarray, claims: ChunkClaims, level: int = FULL,
                  journal: Journal | None = None, population: int = 0, worker: int = 0,
                  margin: float = 0.0, first: bool = True) -> int:
    """Step this worker's agents ``lo..hi`` in chunks until none is left or the deadline has
    passed; return how many ran.

    With quantized beliefs each chunk's codes are decoded into ``beliefs`` (pool scratch),
    stepped, and encoded back. With a ``journal`` (worker processes) each kernel call's rows
    are staged and committed so that a worker dying mid-write leaves no agent half-updated.
    ``level`` is the degradation rung (``engine.degrade``): 1-2 use a cheaper kernel setting,
    3 also updates only every other chunk (alternating each tick), 4 updates nobody. Agents
    not updated keep their last action and their stale flag.

    The chunks are taken in turn from the slice's cursor (``claims``; a helper may take the
    last ones). With a deadline a chunk is stepped in blocks, the deadline checked before
    each, sized to take ``BLOCK_SHARE`` of the time left at the measured pace (``_Pace``),
    never under ``degrade.block_size`` agents. When the deadline cuts the tick, the
    cursor moves to the first agent not stepped, so the next tick starts there, part-way
    into a chunk if need be. The worker's ``first`` block of the tick is always stepped
    (every tick makes progress), the others only while ``margin`` is left before the
    deadline.
    """
    if level >= STALE_ACTIONS or hi <= lo:
        return 0
    soft = deadline - margin
    pace = _Pace(chunk, float(claims.pace[worker]))
    ran = 0
    while True:
        if (ran or not first) and time.monotonic() > soft:
            claims.cut(worker, population)
            break
        piece = claims.take_front(worker, population)
        if piece < 0:
            break
        start, end = claims.span(worker, population, piece)
        if _skipped(level, start // chunk, tick):
            continue
        stop = _step_piece(state, lo + start, lo + end, pace, soft, bool(first and not ran),
                           tick, fscratch, iscratch, beliefs, level, journal, population)
        ran += stop - lo - start
        if stop < lo + end:
            claims.cut(worker, population, stop - lo)
            break
    return ran


def help_next_worker(states: tuple[SharedState, ...], slices: tuple[tuple[int, int], ...],
                     chunk: int, tick: int, deadline: float, fscratch: np.ndarray,
                     iscratch: np.ndarray, beliefs: np.ndarray, claims: ChunkClaims,
                     level: int, journal: Journal | None, helped: int, worker: int = 0
                     ) -> int:
    """Take worker ``helped``'s chunks (its ``slices``) from the back while any is left and
    the deadline has not passed, in blocks as :func:`process_slice` does (at the pace of the
    helper, ``worker``); return how many agents ran. Stopped part-way into a chunk, the
    helper says where (``claims``)."""
    if level >= STALE_ACTIONS:
        return 0
    pace = _Pace(chunk, float(claims.pace[worker]))
    ran = 0
    for p, (lo, hi) in enumerate(slices):
        while hi > lo and time.monotonic() <= deadline:
            piece = claims.take_back(helped, p)
            if piece < 0:
                break
            start, end = claims.span(helped, p, piece)
            if _skipped(level, start // chunk, tick):
                continue
            stop = _step_piece(states[p], lo + start, lo + end, pace, deadline, False, tick,
                               fscratch, iscratch, beliefs, level, journal, p)
            ran += stop - lo - start
            if stop < lo + end:
                claims.helper_stopped(helped, p, stop - lo)
                return ran
    return ran


def _skipped(level: int, index: int, tick: int) -> bool:
    """Whether chunk ``index`` is the other half's turn at the rotating level."""
    return level == ROTATING_FRACTION and (index + tick) % 2 == 1


class _Pace:
    """The stepping time per agent, which sizes the next kernel call: the larger of what this
    tick has measured so far and ``floor`` (the worker's pace over its last ticks, which
    counts the time a shared host gives to others); the first call is ``smallest`` agents
    until either is known, then each takes ``BLOCK_SHARE`` of the time left before the
    deadline at that pace, never fewer than ``smallest`` agents."""

    __slots__ = ("seconds", "agents", "smallest", "floor")

    def __init__(self, chunk: int, floor: float = 0.0) -> None:
        self.seconds = 0.0
        self.agents = 0
        self.smallest = block_size(chunk)
        self.floor = floor

    def block(self, left_s: float) -> int:
        """Agents for the next call with ``left_s`` seconds left before the deadline."""
        if left_s == float("inf"):
            return 1 << 62
        per_agent = max(self.seconds / self.agents if self.agents else 0.0, self.floor)
        if per_agent <= 0.0:
            return self.smallest
        return max(self.smallest, int(BLOCK_SHARE * left_s / per_agent))


def _step_piece(state: SharedState, start: int, end: int, pace: _Pace, deadline: float,
                must: bool, tick: int, fscratch: np.ndarray, iscratch: np.ndarray,
                beliefs: np.ndarray, level: int, journal: Journal | None,
                population: int) -> int:
    """Step rows ``start..end`` in blocks sized by ``pace``, each only while the
    ``deadline`` has not passed (the first one regardless when ``must``); return the row it
    stopped at."""
    kc = state.kc_by_level[level]
    token = memo_token(population, level)
    at = start
    while at < end:
        began = time.monotonic()
        if (at > start or not must) and began > deadline:
            break
        stop = min(end, at + pace.block(deadline - began))
        if journal is None:
            run_chunk(state, kc, at, stop, tick, fscratch, iscratch, beliefs, token)
            state.stale[at:stop] = 0
        else:
            journal.run_chunk(population, state, kc, at, stop, tick, fscratch, iscratch,
                              beliefs, token)
        pace.seconds += time.monotonic() - began
        pace.agents += stop - at
        at = stop
    return at


def process_forced(state: SharedState, stale_agents: np.ndarray, chunk: int, tick: int,
                   level: int, fscratch: np.ndarray, iscratch: np.ndarray,
                   beliefs: np.ndarray) -> int:
    """Replay a recorded tick: step every agent except ``stale_agents`` (indices) with the
    kernel settings of ``level``; the listed agents keep their action and are flagged stale.

    Deadlines and the rotating fraction played no part in the recorded stale set's making
    here: it is applied as recorded, so the result does not depend on timing or on how the
    recording engine split its agents.
    """
    kc = state.kc_by_level[level]
    ran = 0
    for lo, hi in forced_chunks(state.stale, stale_agents, chunk):
        run_chunk(state, kc, lo, hi, tick, fscratch, iscratch, beliefs, memo_token(0, level))
        ran += hi - lo
    return ran


def forced_chunks(stale: np.ndarray, stale_agents: np.ndarray, chunk: int
                  ) -> Iterator[tuple[int, int]]:
    """Set the stale flags to exactly ``stale_agents`` and yield the ``(lo, hi)`` row ranges,
    at most ``chunk`` long, of the agents left to step (replay of a recorded tick)."""
    stale[:] = 0
    stale[stale_agents] = 1
    padded = np.concatenate(([1], stale, [1])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))           # run starts and ends, alternating
    for start, end in edges.reshape(-1, 2):
        for lo in range(int(start), int(end), chunk):
            yield lo, min(int(end), lo + chunk)


def memo_token(population: int, level: int) -> int:
    """The kernels' memo token for a population stepped at a degradation level: the scratch a
    worker shares between its populations and levels remembers first steps per token."""
    return 1 + population * (MAX_LEVEL + 1) + level


def run_chunk(state: SharedState, kc: numba_step.KernelConfig, start: int, end: int, tick: int,
              fscratch: np.ndarray, iscratch: np.ndarray, beliefs: np.ndarray,
              token: int) -> None:
    """One kernel call on agents ``start..end``; coded beliefs are decoded into ``beliefs``
    (flat pool scratch) first and encoded back after. ``token``: :func:`memo_token`."""
    chunk = slice(start, end)
    codec = state.codec_instance
    if codec is None:
        qs = state.qs[chunk]
    else:
        size = state.spec.state_size
        qs = beliefs[:(end - start) * size].reshape(end - start, size)
        codec.decode(state.qs[chunk], qs)
    params = None if state.params is None else state.params.rows(start, end)
    step_rows(state, kc, start, end, qs, state.prev_action[chunk], state.started[chunk],
              state.q_pi[chunk], state.G[chunk], state.actions[chunk], params, tick, fscratch,
              iscratch, token)
    if codec is not None:
        codec.encode(qs, state.qs[chunk])


def warm_up(state: SharedState, fscratch: np.ndarray, iscratch: np.ndarray,
            beliefs: np.ndarray) -> None:
    """Compile (or load from cache) the kernel by running it on no agents."""
    run_chunk(state, state.kc, 0, 0, 0, fscratch, iscratch, beliefs, memo_token(0, FULL))


def _wait_for(gate: posix_ipc.Semaphore, parent: int) -> None:
    """Wait for ``gate`` while the master lives (it stops the workers if worker 0 dies)."""
    while True:
        try:
            gate.acquire(IDLE_POLL_S)
            return
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            if os.getppid() != parent:
                raise SystemExit(0) from None


def worker_main(specs: tuple[StateSpec, ...], n_workers: int, index: int,
                slices: tuple[tuple[tuple[int, int], ...], ...], chunk: int,
                respawned: bool = False) -> None:
    """The loop of a worker process (one Numba thread; the workers are the cores), started by
    :mod:`engine.runtime.worker_main`.

    ``slices[w][p]`` is worker ``w``'s ``(lo, hi)`` range of population ``p``; this worker
    steps ``slices[index]`` and helps with the next worker's. ``respawned``: it replaces a
    worker that died (an injected fault is not re-armed).
    """
    numba.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C reaches the master, which stops us
    parent = os.getppid()
    run = Run(specs[0].run_id, owner=False)
    try:
        states = tuple(SharedState.attach(run, spec) for spec in specs)
        control = ControlBlock.attach(run, n_workers)
        fscratch, iscratch, beliefs = scratch_pool(specs, numba.config.NUMBA_NUM_THREADS, chunk)
        journal = Journal.attach(run, index, specs, chunk)
        claims = ChunkClaims.attach(run, slices, chunk)
        mine, helped = slices[index], slices[claims.helps(index)]
        go = run.attach_semaphore(f"go-{index}")
        done = run.attach_semaphore(f"done-{index}")
        faults.configure(index, respawned)
        gate = run.attach_semaphore(WARM_GATE)
        if index > 0 and not respawned:
            _wait_for(gate, parent)
        for state in states:
            warm_up(state, fscratch, iscratch, beliefs)
        if index == 0 and not respawned:
            for _ in range(n_workers - 1):
                gate.release()
        order = np.zeros(1, dtype=np.int64)
        done.release()                                   # ready
        while True:
            try:
                go.acquire(IDLE_POLL_S)
            except (posix_ipc.BusyError, posix_ipc.SignalError):
                if os.getppid() != parent:
                    return                               # the master died: nothing to serve
                continue
            if control.get("stop"):
                return
            began = time.monotonic()
            tick = int(control.get("tick"))
            faults.arm(tick)
            faults.fault_point("wait")
            process_tick(states, mine, chunk, tick, control.get("deadline"), fscratch,
                         iscratch, beliefs, claims, level=int(control.get("level")),
                         journal=journal, worker=index, order=order, helped=helped,
                         margin=control.get("margin"))
            control.beat(index, tick, time.monotonic() - began)
            faults.fault_point("done")
            done.release()
    finally:
        run.close()
