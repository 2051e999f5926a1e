"""Engine: a population in shared memory, stepped by worker processes (or in process).

``Engine.step(obs)`` is the call a simulator makes each tick: the master writes the
observations into shared memory, sets the tick's deadline, releases every worker, and waits
for all of them; each worker runs the kernels on its contiguous slice of agents in chunks and
stops at the deadline, leaving the agents it did not reach with their last action, flagged
stale. ``workers=0`` runs the same slice code in the master process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numba
import numpy as np
import posix_ipc

from .agents import Agents
from .config import InferenceConfig
from .degrade import FULL, MAX_LEVEL, DegradeController
from .errors import AgentloopError, ConfigError
from .metrics import TickMetrics
from .model import GenerativeModel
from .shared_state import SharedState
from .shm import Run, sweep_stale
from .worker import process_slice, scratch_pool, warm_up, worker_main

#: how long start() waits for workers to attach and compile their kernels
START_TIMEOUT_S = 300.0
#: how long a tick may overrun its deadline before a worker is presumed hung
OVERRUN_GRACE_S = 5.0
#: without a budget, how long a tick may take before a worker is presumed hung
NO_BUDGET_TIMEOUT_S = 120.0


class WorldLike(Protocol):
    """What ``Engine.run`` drives: observations in, actions out, agent axis first."""

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Totals of a fixed-rate run."""

    ticks: int
    hz: float
    missed: int
    dropped_slots: int
    tick_s_p50: float
    tick_s_p99: float
    level_counts: list[int]
    interrupted: bool = False


@dataclasses.dataclass(frozen=True)
class TickInfo:
    """What happened in the last tick (for the status line and the tick log)."""

    tick: int
    wall_s: float
    deadline_s: float | None
    stale_agents: int
    level: int


class Engine:
    """A population in shared memory stepped by ``workers`` processes (0: in this process).

    Use as a context manager, or call :meth:`start` and :meth:`close`. Results are identical
    for any number of workers: each agent's random stream is keyed by (seed, agent id, tick).
    """

    def __init__(self, model: GenerativeModel, n_agents: int, workers: int = 2,
                 config: InferenceConfig | None = None, seed: int = 0, chunk: int = 4096,
                 threads: int | None = None, degrade: DegradeController | bool = True,
                 beliefs: str = "uint16") -> None:
        if workers < 0:
            raise ConfigError(f"Engine: workers must be >= 0, got {workers}")
        if chunk < 1:
            raise ConfigError(f"Engine: chunk must be >= 1, got {chunk}")
        self.config = config or InferenceConfig()
        if beliefs not in ("float", "uint16", "uint8"):
            raise ConfigError(f"Engine: beliefs must be 'uint16', 'uint8' or 'float', "
                              f"got {beliefs!r}")
        self.beliefs = beliefs
        if self.config.learn_A or self.config.learn_B or self.config.use_param_info_gain:
            raise ConfigError("Engine: learning and parameter information gain are not in the "
                              "shared-memory engine yet; use Agents for them")
        # Agents validates the population and builds the layout (one place for both)
        self._checker = Agents(model, 1, self.config, seed=seed)
        self.model = model
        self.n_agents = int(n_agents)
        self.workers = int(workers)
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.threads = threads
        self.tick = 0
        self.last_tick: TickInfo | None = None
        if degrade is True:
            degrade = DegradeController()
        self.controller: DegradeController | None = degrade or None
        self._run: Run | None = None
        self.stop_requested = None
        self._in_run = False
        self._procs: list[mp.Process] = []
        self._slices: list[tuple[int, int]] = []

    # ------------------------------------------------------------------------- lifetime
    def start(self) -> Engine:
        """Create the shared state, spawn and warm up the workers."""
        if self._run is not None:
            return self
        sweep_stale()
        self._install_signal_handlers()
        self._run = Run()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        assert self._run is not None
        layout = self._checker.layout
        self.state = SharedState.create(self._run, layout, self.config, self.n_agents,
                                        self.workers, self.seed, self.beliefs)
        self.metrics = TickMetrics(self.n_agents)
        self._actions_view = self.state.actions.view()
        self._actions_view.setflags(write=False)
        if self.workers == 0:
            threads = self.threads or numba.config.NUMBA_NUM_THREADS
            self._fscratch, self._iscratch, self._beliefs = scratch_pool(
                self.state.spec, numba.config.NUMBA_NUM_THREADS, self.chunk)
            numba.set_num_threads(threads)
            warm_up(self.state, self._fscratch, self._iscratch, self._beliefs)
            self.metrics.watch([os.getpid()])
            return
        bounds = np.linspace(0, self.n_agents, self.workers + 1).astype(int)
        self._slices = [(int(bounds[w]), int(bounds[w + 1])) for w in range(self.workers)]
        self._go = [self._run.create_semaphore(f"go-{w}") for w in range(self.workers)]
        self._done = [self._run.create_semaphore(f"done-{w}") for w in range(self.workers)]
        self._procs = [self._spawn(w) for w in range(self.workers)]
        self._ready = [False] * self.workers
        self.respawns = 0
        until = time.monotonic() + START_TIMEOUT_S
        for w in range(self.workers):
            if not self._wait_worker(w, until):
                raise AgentloopError(f"start: worker {w} died or did not get ready in "
                                     f"{START_TIMEOUT_S:.0f} s")
            self._ready[w] = True
        self.metrics.watch([os.getpid()] + [p.pid for p in self._procs if p.pid])

    def _spawn(self, w: int) -> mp.process.BaseProcess:
        lo, hi = self._slices[w]
        proc = mp.get_context("spawn").Process(
            target=worker_main, name=f"agentloop-worker-{w}",
            args=(self.state.spec, w, lo, hi, self.chunk), daemon=True)
        proc.start()
        return proc

    def _wait_worker(self, w: int, until: float) -> bool:
        """Wait for worker ``w``'s done signal; False if it died or ``until`` passed."""
        while True:
            try:
                self._done[w].acquire(0.02)
                return True
            except (posix_ipc.BusyError, posix_ipc.SignalError):
                if not self._procs[w].is_alive() or time.monotonic() > until:
                    return False

    def _replace_worker(self, w: int) -> None:
        """Respawn worker ``w`` on the same slice; its agents' beliefs stay in shared memory."""
        proc = self._procs[w]
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        proc.close()
        while True:                      # drop a done signal the dead worker may have left
            try:
                self._done[w].acquire(0)
            except posix_ipc.BusyError:
                break
        self._procs[w] = self._spawn(w)
        self._ready[w] = False
        self.respawns += 1
        self.metrics.watch([os.getpid()] + [p.pid for p in self._procs if p.pid])

    def close(self) -> None:
        """Stop the workers and remove every segment and semaphore of this run."""
        if self._run is None:
            return
        try:
            if self._procs:
                self.state.set("stop", 1.0)
                for go in self._go:
                    go.release()
                for proc in self._procs:
                    proc.join(5.0)
                    if proc.is_alive():
                        proc.kill()
                        proc.join(5.0)
                    proc.close()
        finally:
            self._procs = []
            for name in ("state", "_actions_view", "_go", "_done", "_ready", "metrics"):
                self.__dict__.pop(name, None)
            self._run.close()
            self._run = None
            self._restore_signal_handlers()

    # ------------------------------------------------------------------------- signals
    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM let the current tick finish, then stop (run) or exit cleanly (step)."""
        self.stop_requested: int | None = None
        self._previous_handlers = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = signum

    def _restore_signal_handlers(self) -> None:
        for sig, handler in getattr(self, "_previous_handlers", {}).items():
            signal.signal(sig, handler)
        self._previous_handlers = {}

    def _honour_stop(self) -> None:
        """After a tick: a pending SIGINT/SIGTERM closes the engine and exits."""
        if self.stop_requested is not None:
            signum = self.stop_requested
            self.close()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: best effort
            pass

    # ------------------------------------------------------------------------- stepping
    def step(self, obs: np.ndarray, budget_s: float | None = None,
             level: int | None = None) -> np.ndarray:
        """Advance every agent one tick; same contract as :meth:`Agents.step`.

        With ``budget_s``, work stops at the deadline: agents not reached keep their last
        action and are flagged stale (``last_tick.stale_agents``, :attr:`stale`), and the
        degradation controller picks the next tick's level from this tick's utilisation.
        ``level`` forces a degradation level for this tick (replay).
        """
        if self._run is None:
            raise AgentloopError("Engine.step: call start() first (or use `with Engine(...)`)")
        self._check(obs)
        if level is None:
            level = self.controller.level if (self.controller and budget_s is not None) else 0
        if not FULL <= level <= MAX_LEVEL:
            raise ConfigError(f"Engine.step: level must be in 0..{MAX_LEVEL}, got {level}")
        started = time.monotonic()
        deadline = float("inf") if budget_s is None else started + float(budget_s)
        state = self.state
        state.obs[:] = obs
        state.set("tick", self.tick)
        state.set("deadline", deadline)
        state.set("level", level)
        if self.workers == 0:
            process_slice(state, 0, self.n_agents, self.chunk, self.tick, deadline,
                          self._fscratch, self._iscratch, self._beliefs, level=level)
        else:
            until = (started + NO_BUDGET_TIMEOUT_S if budget_s is None
                     else deadline + OVERRUN_GRACE_S)
            self._tick_workers(until)
        wall = time.monotonic() - started
        if self.controller is not None and budget_s is not None:
            self.controller.observe(wall / max(budget_s, 1e-9))
        stale = int(state.stale.sum())
        self.last_tick = TickInfo(tick=self.tick, wall_s=wall, deadline_s=budget_s,
                                  stale_agents=stale, level=level)
        self.metrics.record(wall, budget_s, level, stale,
                            tuple(state.busy(w) for w in range(self.workers)))
        self.tick += 1
        if self.stop_requested is not None and not self._in_run:
            self._honour_stop()
        return self._actions_view

    def run(self, world: WorldLike, hz: float, ticks: int,
            on_tick: Callable[[TickInfo], None] | None = None) -> RunSummary:
        """Drive ``world`` at a fixed rate for ``ticks`` ticks ("fix your timestep").

        Tick k is due at start + k / hz: the engine's budget is what is left of the slot after
        the world's step (estimated from its recent steps). A late tick starts at once; a tick
        more than a whole period late drops the missed slots instead of trying to catch up, so
        the loop neither drifts nor spirals. SIGINT or SIGTERM ends the run after the current
        tick, closes the engine and then raises ``KeyboardInterrupt`` / ``SystemExit``.
        """
        if hz <= 0:
            raise ConfigError(f"Engine.run: hz must be > 0, got {hz}")
        period = 1.0 / hz
        obs = world.reset(self.seed)
        due = time.monotonic()
        self._in_run = True
        try:
            return self._run_loop(world, period, hz, ticks, on_tick, obs, due)
        finally:
            self._in_run = False

    def _run_loop(self, world: WorldLike, period: float, hz: float, ticks: int,
                  on_tick: Callable[[TickInfo], None] | None, obs: np.ndarray,
                  due: float) -> RunSummary:
        world_s = 0.0
        walls = np.zeros(ticks)
        levels = np.zeros(ticks, dtype=np.int64)
        missed = dropped = 0
        done = 0
        for k in range(ticks):
            if self.stop_requested is not None:
                break
            slot_start = time.monotonic()
            budget = max(0.0, due + period - slot_start - world_s)
            actions = self.step(obs, budget_s=budget)
            w0 = time.monotonic()
            obs = world.step(actions)
            world_s = 0.8 * world_s + 0.2 * (time.monotonic() - w0) if k else \
                time.monotonic() - w0
            walls[k] = time.monotonic() - slot_start
            levels[k] = self.last_tick.level if self.last_tick else 0
            if on_tick is not None and self.last_tick is not None:
                on_tick(self.last_tick)
            done = k + 1
            due += period
            now = time.monotonic()
            if now < due and self.stop_requested is None:
                time.sleep(due - now)
            else:
                missed += 1
                if now - due > period:
                    skipped = int((now - due) // period)
                    dropped += skipped
                    due += skipped * period
        walls, levels = walls[:max(done, 1)], levels[:max(done, 1)]
        summary = RunSummary(ticks=done, hz=hz, missed=missed, dropped_slots=dropped,
                             tick_s_p50=float(np.median(walls)),
                             tick_s_p99=float(np.percentile(walls, 99)),
                             level_counts=np.bincount(levels,
                                                      minlength=MAX_LEVEL + 1).tolist(),
                             interrupted=self.stop_requested is not None)
        self._honour_stop()
        return summary

    def _tick_workers(self, until: float) -> None:
        """Release every ready worker and wait; a dead or hung one is respawned.

        The slice of a worker that is not ready (still starting after a respawn) or that died
        during the tick is stale for this tick; its agents' beliefs stay in shared memory.
        """
        released = []
        for w in range(self.workers):
            if not self._ready[w]:
                try:
                    self._done[w].acquire(0)
                    self._ready[w] = True
                except posix_ipc.BusyError:
                    if not self._procs[w].is_alive():
                        self._replace_worker(w)
            if self._ready[w]:
                self._go[w].release()
                released.append(w)
            else:
                lo, hi = self._slices[w]
                self.state.stale[lo:hi] = 1
        for w in released:
            if not self._wait_worker(w, until):
                lo, hi = self._slices[w]
                self.state.stale[lo:hi] = 1
                self._replace_worker(w)

    def _check(self, obs: np.ndarray) -> None:
        self._checker.check_observations(obs, self.n_agents)

    # ------------------------------------------------------------------------- state
    @property
    def qs(self) -> list[np.ndarray]:
        """Posterior over each factor, ``(n, S_f)``: views of shared memory, or (quantized
        beliefs) a decoded copy."""
        offsets = self._checker.layout.state_offset
        flat = self.state.qs
        codec = self.state.codec_instance
        if codec is not None:
            flat = np.empty(flat.shape, dtype=self._checker.layout.dtype)
            codec.decode(self.state.qs, flat)
        return [flat[:, offsets[f]:offsets[f + 1]] for f in range(len(offsets) - 1)]

    @property
    def q_pi(self) -> np.ndarray:
        return self.state.q_pi

    @property
    def G(self) -> np.ndarray:
        return self.state.G

    @property
    def stale(self) -> np.ndarray:
        """1 for agents the last tick did not reach (they kept their previous action)."""
        return self.state.stale
