"""Engine: populations of agents in shared memory, stepped by worker processes (or in process).

``Engine.step(obs)`` is the call a simulator makes each tick: the master writes the
observations into shared memory, sets the tick's deadline, releases every worker, and waits
for all of them; each worker runs the kernels on its contiguous slice of every population in
chunks and stops at the deadline, leaving the agents it did not reach with their last action,
flagged stale. ``workers=0`` runs the same code in the master process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numba
import numpy as np
import posix_ipc

from engine.errors import (
    ConfigError,
    EngineStateError,
    ObservationError,
    WorkerError,
)
from engine.kernels.array_step import resolve_kernel
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents, select_agents
from engine.runtime.claims import ChunkClaims
from engine.runtime.contracts import WorldLike
from engine.runtime.degrade import (
    FULL,
    MAX_LEVEL,
    ROTATING_BUDGET,
    ROTATING_FRACTION,
    DegradeController,
    controller_for,
)
from engine.runtime.device_populations import REFRESH_EVERY, DevicePopulation, device_errors
from engine.runtime.journal import Journal
from engine.runtime.metrics import TickMetrics
from engine.runtime.population import (
    Population,
    PopulationState,
    check_populations,
    population_backends,
    population_index,
)
from engine.runtime.shared_state import ControlBlock, SharedState
from engine.runtime.shm import Run, sweep_stale
from engine.runtime.signals import StopOnSignal
from engine.runtime.worker import (
    process_forced,
    process_slice,
    process_tick,
    scratch_pool,
    warm_up,
    worker_main,
)

#: how long start() waits for workers to attach and compile their kernels
START_TIMEOUT_S = 300.0
#: how long a tick may overrun its deadline before a worker is presumed hung
OVERRUN_GRACE_S = 5.0
#: without a budget, how long a tick may take before a worker is presumed hung
NO_BUDGET_TIMEOUT_S = 120.0


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


@dataclasses.dataclass(frozen=True)
class Failover:
    """A device population moved to the CPU in ``tick`` because of ``error``; it continued
    from the state last copied into shared memory."""

    tick: int
    population: str
    error: str


class Engine(StopOnSignal):
    """Populations in shared memory stepped by ``workers`` processes (0: in this process).

    ``Engine(model, n_agents)`` runs one population; ``Engine(populations=[Population(...),
    ...])`` runs several (different models and configs) in one tick, and then ``step`` takes
    and returns one array per population (a list, or a dict keyed by population name).
    ``cluster="ray://host:port"`` spreads the populations over a Ray cluster
    (:mod:`engine.cluster`; the ``[cluster]`` extra). ``backend="cupy"`` (or a population's
    own ``backend``) keeps a population's state on the GPU, stepped by the master process while
    the workers step the CPU populations (:mod:`engine.device`; ``"xp-numpy"`` runs the same
    code on the CPU); its state is copied into shared memory a ``1 / refresh_every`` band of
    rows a tick and whole whenever it is read; ``xp_kernel`` picks the array backend's step
    (``"array"``, ``"fused"``, or ``"auto"``: ``$AGENTLOOP_XP_KERNEL``, else ``"array"``).
    Use as a context manager, or call :meth:`start` and :meth:`close`. Results are identical
    for any number of workers: each agent's random stream is keyed by (seed, agent id, tick).
    """

    def __new__(cls, *args: Any, cluster: str | None = None, **kwargs: Any) -> Any:
        """``Engine(..., cluster="ray://host:port")`` (or ``"local"``) builds the same engine
        spread over a Ray cluster instead (:class:`engine.cluster.ClusterEngine`, which is
        not an ``Engine`` subclass, so ``__init__`` does not run again)."""
        if cluster is None:
            return super().__new__(cls)
        from engine.cluster.cluster_engine import make_engine

        return make_engine(*args, cluster=cluster, **kwargs)

    def __init__(self, model: GenerativeModel | None = None, n_agents: int = 0,
                 workers: int = 2, config: InferenceConfig | None = None, seed: int = 0,
                 chunk: int = 1024, threads: int | None = None,
                 degrade: DegradeController | bool = True, beliefs: str = "uint16",
                 populations: Sequence[Population] | None = None,
                 id_offset: int | Sequence[int] = 0,
                 cluster: str | None = None, backend: str = "numba",
                 refresh_every: int = REFRESH_EVERY, xp_kernel: str = "auto") -> None:
        if workers < 0:
            raise ConfigError(f"Engine: workers must be >= 0, got {workers}")
        if chunk < 1:
            raise ConfigError(f"Engine: chunk must be >= 1, got {chunk}")
        self.config = config or InferenceConfig()
        if beliefs not in ("float", "uint16", "uint8"):
            raise ConfigError(f"Engine: beliefs must be 'uint16', 'uint8' or 'float', "
                              f"got {beliefs!r}")
        self.beliefs = beliefs
        if (model is None) == (populations is None):
            raise ConfigError("Engine: give either model and n_agents, or populations")
        if populations is None:
            if not isinstance(n_agents, (int, np.integer)) or n_agents < 0:
                raise ConfigError(f"Engine: n_agents must be an int >= 0, got {n_agents!r}")
            populations = [Population("main", model, int(n_agents), self.config)]
        self.populations: list[Population] = list(populations)
        configs = check_populations(self.populations, self.config)
        #: each population's first agent id (the random stream's key): numbered on from
        #: ``id_offset`` in population order, or given one per population (a cluster shard)
        self.id_offsets = _population_id_offsets(id_offset, self.populations)
        self.id_offset = self.id_offsets[0]
        #: each population's resolved backend: "numba" (CPU workers), "cupy" or "xp-numpy"
        self.backends = population_backends(self.populations, configs, backend)
        if not isinstance(refresh_every, (int, np.integer)) or refresh_every < 1:
            raise ConfigError(f"Engine: refresh_every must be an int >= 1, got {refresh_every!r}")
        self.refresh_every = int(refresh_every)
        #: the array backend's step for device populations ("array" or "fused")
        self.xp_kernel = resolve_kernel(xp_kernel)
        # Agents validates each population and builds its layout (one place for both)
        self._checkers = [Agents(p.model, 1, c, seed=seed)
                          for p, c in zip(self.populations, configs, strict=True)]
        dtypes = {c.layout.dtype for c in self._checkers}
        if len(dtypes) > 1:
            raise ConfigError(f"Engine: every population must use one dtype, got "
                              f"{sorted(str(d) for d in dtypes)}")
        self._configs = configs
        self.model = self.populations[0].model
        self.n_agents = sum(int(p.n_agents) for p in self.populations)
        self.workers = int(workers)
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.threads = threads
        self.tick = 0
        self.last_tick: TickInfo | None = None
        self.controller = controller_for(degrade, [
            (c.layout.n_factors, config.num_iter, config.policy_len)
            for c, config in zip(self._checkers, configs, strict=True)])
        self._run: Run | None = None
        self.stop_requested = None
        self._in_run = False
        self._procs: list[mp.Process] = []
        self._slices: list[tuple[int, int]] = []
        self._device: dict[int, DevicePopulation] = {}
        #: device populations moved to the CPU after the device failed (``engine.device``)
        self.failovers: list[Failover] = []
        self._on_cpu_in_master: list[int] = []

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
        self._states: list[SharedState] = []
        self._on_cpu_in_master = []
        for index, (pop, checker, config, offset) in enumerate(zip(
                self.populations, self._checkers, self._configs, self.id_offsets, strict=True)):
            self._states.append(SharedState.create(
                self._run, checker.layout, config, int(pop.n_agents), self.seed, self.beliefs,
                prefix=f"p{index}-", id_offset=offset))
        self.state = self._states[0]
        self.control = ControlBlock.create(self._run, self.workers)
        #: device-resident populations by index (backend "cupy" or "xp-numpy")
        self._device = {
            index: DevicePopulation(state, pop.model, config, backend, self.seed,
                                    self.id_offsets[index], self.refresh_every,
                                    kernel=self.xp_kernel)
            for index, (pop, config, backend, state) in enumerate(
                zip(self.populations, self._configs, self.backends, self._states, strict=True))
            if backend != "numba"}
        self.population_states = {
            pop.name: PopulationState(pop, checker, state,
                                      self._device[i].sync if i in self._device else None)
            for i, (pop, checker, state) in enumerate(
                zip(self.populations, self._checkers, self._states, strict=True))}
        self.metrics = TickMetrics(self.n_agents)
        self._actions_view = self.state.actions.view()
        self._actions_view.setflags(write=False)
        specs = tuple(state.spec for state in self._states)
        if self.workers == 0 or self._device:
            # the master's own Numba scratch: everything (workers=0), or a device population
            # failing over to the CPU (warmed up now, so a failover does not stall a tick)
            self._fscratch, self._iscratch, self._beliefs = scratch_pool(
                specs, numba.config.NUMBA_NUM_THREADS, self.chunk)
            for index in self._device:
                warm_up(self._states[index], self._fscratch, self._iscratch, self._beliefs)
        if self.workers == 0:
            threads = self.threads or numba.config.NUMBA_NUM_THREADS
            self._slices = [tuple((0, 0 if i in self._device else int(p.n_agents))
                                  for i, p in enumerate(self.populations))]
            self._claims = ChunkClaims.local(tuple(self._slices), self.chunk)
            self._order = np.zeros(1, dtype=np.int64)
            numba.set_num_threads(threads)
            for state in self._states:
                warm_up(state, self._fscratch, self._iscratch, self._beliefs)
            self.metrics.watch([os.getpid()])
            return
        bounds = [np.linspace(0, 0 if i in self._device else int(p.n_agents),
                              self.workers + 1).astype(int)
                  for i, p in enumerate(self.populations)]
        self._slices = [tuple((int(b[w]), int(b[w + 1])) for b in bounds)
                        for w in range(self.workers)]
        self._journals = [Journal.create(self._run, w, specs, self.chunk)
                          for w in range(self.workers)]
        self._claims = ChunkClaims.create(self._run, tuple(self._slices), self.chunk)
        self.recovered_commits = 0
        self._go = [self._run.create_semaphore(f"go-{w}") for w in range(self.workers)]
        self._done = [self._run.create_semaphore(f"done-{w}") for w in range(self.workers)]
        self._procs = [self._spawn(w) for w in range(self.workers)]
        self._ready = [False] * self.workers
        self.respawns = 0
        until = time.monotonic() + START_TIMEOUT_S
        for w in range(self.workers):
            if not self._wait_worker(w, until):
                raise WorkerError(f"start: worker {w} died or did not get ready in "
                                  f"{START_TIMEOUT_S:.0f} s")
            self._ready[w] = True
        self.metrics.watch([os.getpid()] + [p.pid for p in self._procs if p.pid])

    def _spawn(self, w: int, respawned: bool = False) -> mp.process.BaseProcess:
        specs = tuple(state.spec for state in self._states)
        proc = mp.get_context("spawn").Process(
            target=worker_main, name=f"agentloop-worker-{w}",
            args=(specs, self.workers, w, tuple(self._slices), self.chunk, respawned),
            daemon=True)
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
        """Respawn worker ``w`` on the same slice; its agents' beliefs stay in shared memory,
        and a commit it died in is finished from its journal first."""
        proc = self._procs[w]
        if proc.is_alive():
            proc.kill()
        proc.join(5.0)
        proc.close()
        if self._journals[w].recover(self._states) is not None:
            self.recovered_commits += 1
        # drop the signals the dead worker left: a done it gave, a go it never took (else the
        # new worker would run a phantom tick and the master read its done one tick late)
        for semaphore in (self._done[w], self._go[w]):
            while True:
                try:
                    semaphore.acquire(0)
                except posix_ipc.BusyError:
                    break
        self._procs[w] = self._spawn(w, respawned=True)
        self._ready[w] = False
        self.respawns += 1
        self.metrics.watch([os.getpid()] + [p.pid for p in self._procs if p.pid])

    def close(self) -> None:
        """Stop the workers and remove every segment and semaphore of this run."""
        if self._run is None:
            return
        try:
            if self._procs:
                self.control.set("stop", 1.0)
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
            self._device = {}                # frees device memory (GPU arrays) with the run
            for name in ("state", "_states", "control", "population_states", "_actions_view",
                         "_journals", "_claims",
                         "_go", "_done", "_ready", "metrics"):
                self.__dict__.pop(name, None)
            self._run.close()
            self._run = None
            self._restore_signal_handlers()

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
    def step(self, obs: Any, budget_s: float | None = None,
             level: int | None = None, stale: np.ndarray | None = None) -> Any:
        """Advance every agent one tick; same contract as :meth:`Agents.step`.

        With one population ``obs`` is an ``(n, n_modalities)`` int array and the result an
        ``(n, n_factors)`` array; with several, ``obs`` is a list of such arrays in population
        order (the result is a list) or a dict keyed by population name (the result is a
        dict). Results are read-only views that the next tick overwrites.

        With ``budget_s``, work stops at the deadline: agents not reached keep their last
        action and are flagged stale (``last_tick.stale_agents``, :attr:`stale`), and the
        degradation controller picks the next tick's level from this tick's utilisation.
        ``level`` forces a degradation level for this tick and ``stale`` (agent indices) the
        set of agents that keep their last action (replay; one population, ``workers=0``).
        Invalid observations raise :class:`ObservationError` before any state changes.
        """
        if self._run is None:
            raise EngineStateError("Engine.step: call start() first (or use `with Engine(...)`)")
        per_population = self._split_observations(obs)
        if level is None:
            level = self.controller.level if (self.controller and budget_s is not None) else 0
        if not FULL <= level <= MAX_LEVEL:
            raise ConfigError(f"Engine.step: level must be in 0..{MAX_LEVEL}, got {level}")
        if stale is not None:
            stale = self._check_forced_stale(stale)
        started = time.monotonic()
        deadline = float("inf") if budget_s is None else started + float(budget_s) * (
            ROTATING_BUDGET if level == ROTATING_FRACTION else 1.0)
        for state, pop_obs in zip(self._states, per_population, strict=True):
            state.obs[:] = pop_obs
            state.stale[:] = 1               # cleared chunk by chunk as results are written
        control = self.control
        control.set("tick", self.tick)
        control.set("deadline", deadline)
        control.set("level", level)
        if stale is not None:
            if 0 in self._device:
                self._device[0].step_forced(self.tick, stale, level)
            else:
                process_forced(self.state, stale, self.chunk, self.tick, level, self._fscratch,
                               self._iscratch, self._beliefs)
        elif self.workers == 0:
            self._claims.start_tick()
            process_tick(self._states, self._slices[0], self.chunk, self.tick, deadline,
                         self._fscratch, self._iscratch, self._beliefs, self._claims,
                         level=level, order=self._order)
            self._step_device(deadline, level)
        else:
            until = (started + NO_BUDGET_TIMEOUT_S if budget_s is None
                     else deadline + OVERRUN_GRACE_S)
            self._claims.start_tick()
            released = self._release_workers()
            self._step_device(deadline, level)
            self._wait_workers(released, until)
        wall = time.monotonic() - started
        if self.controller is not None and budget_s is not None:
            self.controller.observe(wall / max(budget_s, 1e-9))
        stale = sum(int(state.stale.sum()) for state in self._states)
        self.last_tick = TickInfo(tick=self.tick, wall_s=wall, deadline_s=budget_s,
                                  stale_agents=stale, level=level)
        self.metrics.record(wall, budget_s, level, stale,
                            tuple(control.busy(w) for w in range(self.workers)))
        self.tick += 1
        if self.stop_requested is not None and not self._in_run:
            self._honour_stop()
        if self._single:
            return self._actions_view
        actions = [p.actions for p in self.population_states.values()]
        if isinstance(obs, Mapping):
            return dict(zip(self.population_states, actions, strict=True))
        return actions

    def _check_forced_stale(self, stale: np.ndarray) -> np.ndarray:
        if self.workers != 0 or not self._single:
            raise ConfigError("Engine.step: a forced stale set (replay) needs one population "
                              "and workers=0")
        return select_agents(stale, self.n_agents)

    def reset(self, agents: np.ndarray | None = None, population: str | int = 0) -> None:
        """Start a new episode for ``agents`` (indices; default all) of a population: beliefs
        back to uniform and the next tick's prior is D again (as ``Agents.reset``)."""
        index = population_index(self.populations, population)
        pop = self.population(index)
        idx = select_agents(agents, pop.n_agents)
        state = pop.state
        if state.codec_instance is not None:
            state.qs[idx] = 0                        # a log code of 0 everywhere is uniform
        else:
            offsets = pop.checker.layout.state_offset
            for f in range(len(offsets) - 1):
                state.qs[idx, offsets[f]:offsets[f + 1]] = 1.0 / (offsets[f + 1] - offsets[f])
        state.started[idx] = 0
        state.prev_action[idx] = 0
        if index in self._device:
            self._device[index].load_from_shared(idx)

    # ------------------------------------------------------------------------- snapshots
    #: the per-agent arrays that make up an agent's state between ticks
    STATE_ARRAYS = ("qs", "prev_action", "started", "actions")

    def agent_state(self, population: str | int | None = None) -> dict[str, np.ndarray]:
        """Copies of every agent's state between ticks (beliefs as stored: codes when
        quantized), enough to continue a run with :meth:`load_agent_state`; of the one
        population, or of ``population`` (name or position) when there are several."""
        state = self.population(self._chosen_index(population, "agent_state")).state
        self.sync()
        return {name: np.array(getattr(state, name)) for name in self.STATE_ARRAYS}

    def load_agent_state(self, arrays: Mapping[str, np.ndarray], tick: int,
                         population: str | int | None = None) -> None:
        """Restore :meth:`agent_state` output (of ``population`` when there are several);
        the next step is tick ``tick``. All arrays are checked before any is written."""
        index = self._chosen_index(population, "load_agent_state")
        state = self.population(index).state
        for name in self.STATE_ARRAYS:
            target = getattr(state, name)
            if name not in arrays:
                raise ConfigError(f"load_agent_state: missing array {name!r}")
            source = np.asarray(arrays[name])
            if source.shape != target.shape or source.dtype != target.dtype:
                raise ConfigError(f"load_agent_state: {name} must be {target.dtype} "
                                  f"{target.shape}, got {source.dtype} {source.shape}")
        for name in self.STATE_ARRAYS:
            getattr(state, name)[...] = arrays[name]
        state.stale[:] = 0
        self.tick = int(tick)
        if index in self._device:
            self._device[index].load_from_shared()

    @property
    def _single(self) -> bool:
        return len(self.populations) == 1

    def _split_observations(self, obs: Any) -> list[np.ndarray]:
        """One checked observation array per population, in order (nothing written yet)."""
        if self._single and not isinstance(obs, (Mapping, list, tuple)):
            parts = [obs]
        elif isinstance(obs, Mapping):
            names = [p.name for p in self.populations]
            if sorted(obs) != sorted(names):
                raise ObservationError(f"observations: expected one array for each population "
                                       f"{names}, got keys {sorted(obs)}")
            parts = [obs[name] for name in names]
        elif isinstance(obs, (list, tuple)):
            if len(obs) != len(self.populations):
                raise ObservationError(f"observations: expected {len(self.populations)} "
                                       f"arrays (one per population), got {len(obs)}")
            parts = list(obs)
        else:
            raise ObservationError(f"observations: this engine has {len(self.populations)} "
                                   f"populations; give a list or a dict of arrays, got "
                                   f"{type(obs).__name__}")
        for pop, checker, part in zip(self.populations, self._checkers, parts, strict=True):
            try:
                checker.check_observations(part, int(pop.n_agents))
            except ObservationError as exc:
                if self._single:
                    raise
                raise ObservationError(f"population {pop.name!r}: {exc}") from None
        return parts

    def run(self, world: WorldLike, hz: float, ticks: int,
            on_tick: Callable[[TickInfo], None] | None = None,
            raise_on_signal: bool = True) -> RunSummary:
        """Drive ``world`` at a fixed rate for ``ticks`` ticks ("fix your timestep").

        Tick k is due at start + k / hz: the engine's budget is what is left of the slot after
        the world's step (estimated from its recent steps). A late tick starts at once; a tick
        more than a whole period late drops the missed slots instead of trying to catch up, so
        the loop neither drifts nor spirals. SIGINT or SIGTERM ends the run after the current
        tick, closes the engine and then raises ``KeyboardInterrupt`` / ``SystemExit``; with
        ``raise_on_signal=False`` it returns the summary (``interrupted=True``,
        :attr:`stop_requested` holds the signal) and leaves closing to the caller.
        """
        if hz <= 0:
            raise ConfigError(f"Engine.run: hz must be > 0, got {hz}")
        period = 1.0 / hz
        obs = world.reset(self.seed)
        due = time.monotonic()
        self._in_run = True
        try:
            summary = self._run_loop(world, period, hz, ticks, on_tick, obs, due)
        finally:
            self._in_run = False
        if raise_on_signal:
            self._honour_stop()
        return summary

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
        return summary

    def _step_device(self, deadline: float, level: int) -> None:
        """Step the device-resident populations (while the CPU workers step theirs), and the
        ones that failed over to the CPU."""
        for index, device in list(self._device.items()):
            try:
                device.step(self.tick, deadline, level)
            except device_errors() as exc:
                self._fail_over(index, exc)
        if self._on_cpu_in_master:
            self._failover_claims.start_tick()
            for index in self._on_cpu_in_master:
                process_slice(self._states[index], 0, int(self.populations[index].n_agents),
                              self.chunk, self.tick, deadline, self._fscratch, self._iscratch,
                              self._beliefs, self._failover_claims, level, None, index)

    def _fail_over(self, index: int, exc: BaseException) -> None:
        """The device failed stepping population ``index``: from this tick on the master steps
        it on the CPU, from the state last copied into shared memory (what the device stepped
        since never left it)."""
        self._move_to_cpu(index)
        pop = self.populations[index]
        self.failovers.append(Failover(self.tick, pop.name, f"{type(exc).__name__}: {exc}"))
        warnings.warn(f"population {pop.name!r}: the device failed at tick {self.tick} "
                      f"({type(exc).__name__}: {exc}); it continues on the CPU from its state "
                      f"in shared memory (at most {self.refresh_every} ticks old)",
                      RuntimeWarning, stacklevel=3)

    def _move_to_cpu(self, index: int) -> None:
        """Drop device population ``index``; the master steps it with the Numba kernels from
        its state in shared memory (a failover, or replay following one)."""
        del self._device[index]
        self._states[index].stale[:] = 1
        self.backends[index] = "numba"
        self.population_states[self.populations[index].name]._sync = lambda: None
        self._on_cpu_in_master.append(index)
        self._failover_claims = ChunkClaims.local(
            (tuple((0, int(p.n_agents) if i in self._on_cpu_in_master else 0)
                   for i, p in enumerate(self.populations)),), self.chunk)

    def sync(self) -> None:
        """Copy every device-resident population's state into shared memory now (it is also
        copied a band of rows a tick, and whole before it is read through the engine)."""
        for device in self._device.values():
            device.sync()

    def _release_workers(self) -> list[int]:
        """Release every ready worker (a dead one that never got ready is respawned); returns
        the workers released.

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
        return released

    def _wait_workers(self, released: list[int], until: float) -> None:
        """Wait for the released workers; a dead or hung one is respawned."""
        for w in released:
            if not self._wait_worker(w, until):
                self._replace_worker(w)

    # ------------------------------------------------------------------------- state
    @property
    def run_id(self) -> str | None:
        """This run's id (the ``agentloop-<run id>-`` prefix in /dev/shm); None when closed."""
        return None if self._run is None else self._run.run_id

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (empty with ``workers=0``)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def population(self, name: str | int = 0) -> PopulationState:
        """A population's state (``qs``, ``q_pi``, ``G``, ``actions``, ``stale``) by name or
        position; the engine must be started."""
        if self._run is None:
            raise EngineStateError("Engine.population: call start() first")
        return self.population_states[
            self.populations[population_index(self.populations, name)].name]

    def _chosen_index(self, population: str | int | None, what: str) -> int:
        if population is None:
            self._only_population(what)
            return 0
        return population_index(self.populations, population)

    def _only_population(self, what: str) -> PopulationState:
        if not self._single:
            raise EngineStateError(f"Engine.{what}: this engine has {len(self.populations)} "
                                   f"populations; use engine.population(name).{what}")
        return self.population(0)

    @property
    def qs(self) -> list[np.ndarray]:
        """Posterior over each factor, ``(n, S_f)``: views of shared memory, or (quantized
        beliefs) a decoded copy. One population only (else ``population(name).qs``)."""
        return self._only_population("qs").qs

    @property
    def q_pi(self) -> np.ndarray:
        """Posterior over policies after the last tick (one population only)."""
        return self._only_population("q_pi").q_pi

    @property
    def G(self) -> np.ndarray:
        """Expected free energy per policy after the last tick (one population only)."""
        return self._only_population("G").G

    @property
    def stale(self) -> np.ndarray:
        """1 for agents the last tick did not reach (they kept their previous action);
        all populations' flags concatenated in population order (a copy) when several."""
        if self._single:
            return self.state.stale
        return np.concatenate([state.stale for state in self._states])


def _population_id_offsets(id_offset: int | Sequence[int],
                           populations: Sequence[Population]) -> list[int]:
    """Each population's first agent id: from one ``id_offset`` the populations are numbered
    on in order; a sequence gives one offset per population (their ranges must not overlap)."""
    sizes = [int(p.n_agents) for p in populations]
    if isinstance(id_offset, (int, np.integer)):
        if id_offset < 0:
            raise ConfigError(f"Engine: id_offset must be >= 0, got {id_offset!r}")
        return [int(o) for o in np.cumsum([int(id_offset)] + sizes[:-1])]
    offsets = list(id_offset) if isinstance(id_offset, Sequence) else None
    if (offsets is None or len(offsets) != len(populations)
            or not all(isinstance(o, (int, np.integer)) and o >= 0 for o in offsets)):
        raise ConfigError(f"Engine: id_offset must be an int >= 0 or one per population "
                          f"({len(populations)}), got {id_offset!r}")
    ranges = sorted((int(o), int(o) + n) for o, n in zip(offsets, sizes, strict=True) if n)
    if any(hi > lo for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False)):
        raise ConfigError(f"Engine: the populations' id ranges overlap (id_offset {offsets})")
    return [int(o) for o in offsets]
