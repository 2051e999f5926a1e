"""Worker: waits for a tick, runs the kernels on its slice of agents in chunks, signals done.

``process_slice`` is also what ``Engine(workers=0)`` runs in the master process, so both paths
compute the same numbers. Between chunks the deadline is checked; agents not reached keep their
last action and are flagged stale for the tick.
"""

from __future__ import annotations

import os
import signal
import time

import numba
import numpy as np
import posix_ipc

from .degrade import FULL, ROTATING_FRACTION, STALE_ACTIONS
from .kernels import cpu
from .pool import ArrayPool
from .shared_state import SharedState, StateSpec
from .shm import Run

#: how often an idle worker wakes to check that its master still lives (seconds)
IDLE_POLL_S = 0.5


def scratch_pool(spec: StateSpec, threads: int, chunk: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread kernel scratch and the decoded beliefs of one chunk, from one pool."""
    requests = [((threads, spec.float_scratch), "float64"),
                ((threads, spec.int_scratch), "int64"),
                ((chunk if spec.quantized else 0, spec.state_size), spec.dtype)]
    pool = ArrayPool(ArrayPool.bytes_for(requests))
    return (pool.borrow("fscratch", (threads, spec.float_scratch), "float64"),
            pool.borrow("iscratch", (threads, spec.int_scratch), "int64"),
            pool.borrow("beliefs", requests[2][0], spec.dtype))


def process_slice(state: SharedState, lo: int, hi: int, chunk: int, tick: int,
                  deadline: float, fscratch: np.ndarray, iscratch: np.ndarray,
                  beliefs: np.ndarray, level: int = FULL) -> int:
    """Step agents ``lo..hi`` in chunks until done or past the deadline; return how many ran.

    With quantized beliefs each chunk's codes are decoded into ``beliefs`` (pool scratch),
    stepped, and encoded back. ``level`` is the degradation rung (``engine.degrade``): 1-2 use
    a cheaper kernel setting, 3 also updates only every other chunk (alternating each tick),
    4 updates nobody. Agents not updated keep their last action and are flagged stale.
    """
    kc = state.kc_by_level[level]
    stale = state.stale
    codec = state.codec_instance
    if level >= STALE_ACTIONS:
        stale[lo:hi] = 1
        return 0
    ran = 0
    start = lo
    index = 0
    while start < hi:
        end = min(hi, start + chunk)
        if start > lo and time.monotonic() > deadline:
            stale[start:hi] = 1
            break
        if level == ROTATING_FRACTION and (index + tick) % 2 == 1:
            stale[start:end] = 1
        else:
            if codec is None:
                qs = state.qs[start:end]
            else:
                qs = beliefs[:end - start]
                codec.decode(state.qs[start:end], qs)
            cpu.step_agents(state.km, kc, state.agent_ids[start:end], state.obs[start:end],
                            qs, state.prev_action[start:end], state.started[start:end],
                            state.q_pi[start:end], state.G[start:end],
                            state.actions[start:end], state.spec.seed, tick, fscratch,
                            iscratch, state.spec.scratch_sizes, kc.num_iter)
            if codec is not None:
                codec.encode(qs, state.qs[start:end])
            stale[start:end] = 0
            ran += end - start
        start = end
        index += 1
    return ran


def warm_up(state: SharedState, fscratch: np.ndarray, iscratch: np.ndarray,
            beliefs: np.ndarray) -> None:
    """Compile (or load from cache) the kernel and the codec by running them on no agents."""
    empty = slice(0, 0)
    qs = state.qs[empty] if state.codec_instance is None else beliefs[empty]
    if state.codec_instance is not None:
        state.codec_instance.decode(state.qs[empty], qs)
        state.codec_instance.encode(qs, state.qs[empty])
    cpu.step_agents(state.km, state.kc, state.agent_ids[empty], state.obs[empty], qs,
           state.prev_action[empty], state.started[empty], state.q_pi[empty], state.G[empty],
           state.actions[empty], state.spec.seed, 0, fscratch, iscratch,
           state.spec.scratch_sizes, state.kc.num_iter)


def worker_main(spec: StateSpec, index: int, lo: int, hi: int, chunk: int) -> None:
    """Entry point of a spawned worker process (one Numba thread; the workers are the cores)."""
    numba.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C reaches the master, which stops us
    parent = os.getppid()
    run = Run(spec.run_id, owner=False)
    try:
        state = SharedState.attach(run, spec)
        fscratch, iscratch, beliefs = scratch_pool(spec, numba.config.NUMBA_NUM_THREADS, chunk)
        go = run.attach_semaphore(f"go-{index}")
        done = run.attach_semaphore(f"done-{index}")
        warm_up(state, fscratch, iscratch, beliefs)
        done.release()                                   # ready
        while True:
            try:
                go.acquire(IDLE_POLL_S)
            except (posix_ipc.BusyError, posix_ipc.SignalError):
                if os.getppid() != parent:
                    return                               # the master died: nothing to serve
                continue
            if state.get("stop"):
                return
            began = time.monotonic()
            tick = int(state.get("tick"))
            process_slice(state, lo, hi, chunk, tick, state.get("deadline"), fscratch,
                          iscratch, beliefs, level=int(state.get("level")))
            state.beat(index, tick, time.monotonic() - began)
            done.release()
    finally:
        run.close()
