"""The master's side of the worker processes: spawn, release, wait for, replace and stop them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import posix_ipc

from engine.errors import WorkerError
from engine.runtime.journal import Journal
from engine.runtime.shared_state import ControlBlock, SharedState
from engine.runtime.shm import Run
from engine.runtime.worker import WARM_GATE
from engine.runtime.worker_process import WorkerProcess

log = logging.getLogger("agentloop.workers")

#: how long start() waits for workers to attach and compile their kernels
START_TIMEOUT_S = 300.0
#: a worker silent this many budgets past the deadline is hung (killed and respawned) ...
GRACE_BUDGETS = 2.0
#: ... unless its chunk may still be running: this many chunks' measured work ...
GRACE_CHUNKS = 3.0
#: ... and never sooner than this
MIN_GRACE_S = 0.02


class WorkerGroup:
    """``count`` worker processes, worker ``w`` owning ``slices[w]`` (one ``(lo, hi)``
    per population), released each tick by a ``go`` semaphore and answering on ``done``.

    A worker that dies or hangs is replaced on the same slice; a commit it died in is first
    finished from its journal, so every agent is wholly at its old or its new state.
    """

    processes: list[WorkerProcess]
    slices: list[tuple[tuple[int, int], ...]]
    #: workers replaced since start, and commits finished from a dead worker's journal
    respawns: int
    recovered_commits: int

    def __init__(self, run: Run, states: Sequence[SharedState], count: int,
                 slices: list[tuple[tuple[int, int], ...]], chunk: int,
                 on_pids_changed: Callable[[list[int]], None]) -> None:
        self._run = run
        self._states = list(states)
        self._specs = tuple(state.spec for state in states)
        self.count = count
        self.slices = slices
        self.chunk = chunk
        self._on_pids_changed = on_pids_changed
        self.processes = []
        self.respawns = 0
        self.recovered_commits = 0
        self._journals = [Journal.create(run, w, self._specs, chunk) for w in range(count)]
        self._go = [run.create_semaphore(f"go-{w}") for w in range(count)]
        self._done = [run.create_semaphore(f"done-{w}") for w in range(count)]
        # worker 0 warms up first and opens this for the others (worker.WARM_GATE)
        run.create_semaphore(WARM_GATE)
        self._ready = [False] * count
        self._agent_cost_s = 0.0          # measured seconds per agent-step on one worker

    def grace_s(self, budget_s: float) -> float:
        """How long past a tick's deadline a worker may stay silent before it counts as hung:
        tied to the budget (a tick period), and long enough for a healthy worker to finish the
        chunk it is in (measured), not a fixed number of seconds."""
        chunk_s = self._agent_cost_s * self.chunk
        return max(GRACE_BUDGETS * budget_s, GRACE_CHUNKS * chunk_s, MIN_GRACE_S)

    def note_tick(self, wall_s: float, updated: int) -> None:
        """Learn the per-agent cost from a tick that updated ``updated`` agents."""
        if updated > 0 and wall_s > 0:
            cost = wall_s * self.count / updated
            previous = self._agent_cost_s
            self._agent_cost_s = cost if previous == 0.0 else 0.8 * previous + 0.2 * cost

    @property
    def pids(self) -> list[int]:
        """Process ids of the live worker processes."""
        return [p.pid for p in self.processes if p.pid is not None]

    def start(self) -> None:
        """Spawn every worker and wait until each has attached and warmed up."""
        self.processes = [self._spawn(w) for w in range(self.count)]
        until = time.monotonic() + START_TIMEOUT_S
        for w in range(self.count):
            if not self._wait(w, until):
                raise WorkerError(f"start: worker {w} died or did not get ready in "
                                  f"{START_TIMEOUT_S:.0f} s")
            self._ready[w] = True
        self._on_pids_changed(self.pids)

    def _spawn(self, w: int, respawned: bool = False) -> WorkerProcess:
        return WorkerProcess((self._specs, self.count, w, tuple(self.slices), self.chunk,
                              respawned), name=f"agentloop-worker-{w}")

    def _wait(self, w: int, until: float) -> bool:
        """Wait for worker ``w``'s done signal; False if it died or ``until`` passed."""
        while True:
            try:
                self._done[w].acquire(0.02)
                return True
            except (posix_ipc.BusyError, posix_ipc.SignalError):
                if not self.processes[w].is_alive() or time.monotonic() > until:
                    return False

    def replace(self, w: int) -> None:
        """Respawn worker ``w`` on the same slice; its agents' beliefs stay in shared memory,
        and a commit it died in is finished from its journal first."""
        proc = self.processes[w]
        pid, hung = proc.pid, proc.is_alive()
        if hung:
            proc.kill()
        proc.join(5.0)
        how = "hung (silent past its deadline; killed)" if hung else (
            f"died (exit code {proc.exitcode})")
        proc.close()
        recovered = self._journals[w].recover(self._states) is not None
        if recovered:
            self.recovered_commits += 1
        # drop the signals the dead worker left: a done it gave, a go it never took (else the
        # new worker would run a phantom tick and the master read its done one tick late)
        for semaphore in (self._done[w], self._go[w]):
            while True:
                try:
                    semaphore.acquire(0)
                except posix_ipc.BusyError:
                    break
        self.processes[w] = self._spawn(w, respawned=True)
        self._ready[w] = False
        self.respawns += 1
        self._on_pids_changed(self.pids)
        log.warning("worker %d (pid %s) %s; respawned on the same agents (respawn %d)%s", w,
                    pid, how, self.respawns,
                    "; the commit it died in was finished from its journal" if recovered
                    else "")

    def release(self, control: ControlBlock | None = None) -> list[int]:
        """Release every ready worker (a dead one that never got ready is respawned); returns
        the workers released.

        The slice of a worker that is not ready (still starting after a respawn) or that died
        during the tick is stale for this tick; its agents' beliefs stay in shared memory.
        With ``control``, every worker's heartbeat is cleared first, so that after the tick
        it names the tick only in the workers that finished their stepping.
        """
        released = []
        for w in range(self.count):
            if control is not None:
                control.beat(w, -1.0, 0.0)
            if not self._ready[w]:
                try:
                    self._done[w].acquire(0)
                    self._ready[w] = True
                except posix_ipc.BusyError:
                    if not self.processes[w].is_alive():
                        self.replace(w)
            if self._ready[w]:
                self._go[w].release()
                released.append(w)
        return released

    def wait(self, released: list[int], until: float) -> None:
        """Wait for the released workers; a dead or hung one is respawned."""
        for w in released:
            if not self._wait(w, until):
                self.replace(w)

    def stop(self, control: ControlBlock) -> None:
        """Tell every worker to exit, and kill one that has not after 5 s."""
        processes, self.processes = self.processes, []
        if not processes:
            return
        control.set("stop", 1.0)
        for go in self._go:
            go.release()
        for proc in processes:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
            proc.close()
