"""Engine: populations of agents in shared memory, stepped by worker processes (or in process).

``Engine.step(obs)`` writes the observations into shared memory, sets the tick's deadline,
releases every worker and waits for them; each worker steps its slice of every population in
chunks until the deadline, and the agents it did not reach keep their last action, flagged
stale. ``workers=0`` runs the same code in the master process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np

from engine.errors import ConfigError, EngineStateError
from engine.kernels.array_step import resolve_kernel
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents, select_agents
from engine.runtime.arguments import checked_budget, checked_level, checked_seed, checked_tick
from engine.runtime.claims import ChunkClaims
from engine.runtime.degrade import (
    ROTATING_BUDGET,
    ROTATING_FRACTION,
    DegradeController,
    controller_for,
)
from engine.runtime.device_populations import REFRESH_EVERY, DevicePopulations, Failover
from engine.runtime.engine_base import EngineBase
from engine.runtime.metrics import TickMetrics
from engine.runtime.observations_in import copied_observations
from engine.runtime.population import (
    Population,
    PopulationReads,
    PopulationState,
    check_populations,
    population_backends,
    population_index,
)
from engine.runtime.shared_state import ControlBlock, SharedState
from engine.runtime.shm import Run, sweep_stale
from engine.runtime.sizing import check_fits, engine_footprint
from engine.runtime.stale import MASTER, StaleCounts, count_stale
from engine.runtime.tick import RunSummary, TickInfo
from engine.runtime.worker import process_forced, process_tick, scratch_pool, warm_up
from engine.runtime.worker_group import WorkerGroup

__all__ = ["Engine", "Failover", "RunSummary", "TickInfo"]

#: without a budget, how long a tick may take before a worker is presumed hung
NO_BUDGET_TIMEOUT_S = 120.0


class Engine(EngineBase, PopulationReads):
    """Populations in shared memory stepped by ``workers`` processes (0: in this process).

    ``Engine(model, n_agents)`` runs one population; ``Engine(populations=[Population(...),
    ...])`` runs several (different models and configs) in one tick, and then ``step`` takes
    and returns one array per population (a list, or a dict keyed by population name).
    ``make_engine(..., cluster="ray://host:port")`` spreads the populations over a Ray cluster
    instead (:mod:`engine.cluster`; the ``[cluster]`` extra). ``backend="cupy"`` (or a
    population's own ``backend``) keeps a population's state on the GPU, stepped by the master
    process while the workers step the CPU populations (:mod:`engine.runtime.device_populations`;
    ``"xp-numpy"`` runs the same code on the CPU); its state is copied into shared memory a
    ``1 / refresh_every`` band of rows a tick and whole whenever it is read; ``xp_kernel``
    picks the array backend's step (``"array"``, ``"fused"``, or ``"auto"``:
    ``$AGENTLOOP_XP_KERNEL``, else ``"array"``). Use as a context manager, or call
    :meth:`start` and :meth:`close`. Results are identical for any number of workers: each
    agent's random stream is keyed by (seed, agent id, tick).
    """

    def __init__(self, model: GenerativeModel | None = None, n_agents: int = 0,
                 workers: int = 2, config: InferenceConfig | None = None, seed: int = 0,
                 chunk: int = 1024, threads: int | None = None,
                 degrade: DegradeController | bool = True, beliefs: str = "uint16",
                 populations: Sequence[Population] | None = None,
                 id_offset: int | Sequence[int] = 0,
                 cluster: str | None = None, backend: str = "numba",
                 refresh_every: int = REFRESH_EVERY, xp_kernel: str = "auto") -> None:
        self.config = config or InferenceConfig()
        self.beliefs = beliefs
        seed = checked_seed(seed, "Engine")
        self.populations: list[Population] = _checked_populations(
            model, n_agents, populations, self.config, workers, chunk, beliefs, cluster)
        configs = check_populations(self.populations, self.config)
        check_fits(engine_footprint([(p.model, c, p.n_agents) for p, c in zip(
            self.populations, configs, strict=True)], int(workers), beliefs=beliefs,
            chunk=chunk), f"Engine: {sum(int(p.n_agents) for p in self.populations):,} agents")
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
        self.checkers = [Agents(p.model, 1, c, seed=seed)
                         for p, c in zip(self.populations, configs, strict=True)]
        dtypes = {c.layout.dtype for c in self.checkers}
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
            for c, config in zip(self.checkers, configs, strict=True)])
        self._shm: Run | None = None
        #: the process that started the engine: the only one that may step or clean it up
        self._pid = os.getpid()
        self.stop_requested = None
        self._in_run = False
        #: worker w's slice of each population, ``(lo, hi)`` per population
        self.slices: list[tuple[tuple[int, int], ...]] = []
        self.worker_group: WorkerGroup | None = None
        #: device populations moved to the CPU after the device failed (kept across runs)
        self.failovers: list[Failover] = []
        self.devices = DevicePopulations([], [], [], [], self.seed, [], self.refresh_every,
                                         self.xp_kernel, self.chunk, self.failovers)

    # ------------------------------------------------------------------------- lifetime
    def start(self) -> Engine:
        """Create the shared state, spawn and warm up the workers."""
        with self._guard.exclusive():
            if self._shm is not None:
                return self
            sweep_stale()
            self._pid = os.getpid()
            self._install_signal_handlers()
            self._shm = Run()
            try:
                self._start()
            except BaseException:
                self.close()
                raise
        return self

    def _start(self) -> None:
        assert self._shm is not None
        self.states: list[SharedState] = []
        for index, (pop, checker, config, offset) in enumerate(zip(
                self.populations, self.checkers, self._configs, self.id_offsets, strict=True)):
            self.states.append(SharedState.create(
                self._shm, checker.layout, config, int(pop.n_agents), self.seed, self.beliefs,
                prefix=f"p{index}-", id_offset=offset, params=checker.kernel_params))
        self.state = self.states[0]
        self._num_obs = np.ascontiguousarray(self.checkers[0].layout.num_obs, dtype=np.int64)
        self.control = ControlBlock.create(self._shm, self.workers)
        #: device-resident populations by index (backend "cupy" or "xp-numpy")
        self.devices = DevicePopulations(self.populations, self.states, self._configs,
                                         self.backends, self.seed, self.id_offsets,
                                         self.refresh_every, self.xp_kernel, self.chunk,
                                         self.failovers)
        self.population_states = {
            pop.name: PopulationState(pop, checker, state, self.devices.sync_function(i))
            for i, (pop, checker, state) in enumerate(
                zip(self.populations, self.checkers, self.states, strict=True))}
        self.metrics = TickMetrics(self.n_agents)
        self._actions_view = self.state.actions.view()
        self._actions_view.setflags(write=False)
        specs = tuple(state.spec for state in self.states)
        if self.workers == 0 or len(self.devices):
            # the master's own Numba scratch: everything (workers=0), or a device population
            # failing over to the CPU (warmed up now, so a failover does not stall a tick)
            self._scratch = scratch_pool(specs, numba.config.NUMBA_NUM_THREADS, self.chunk)
            self.devices.attach(self.population_states, self._scratch)
            for index in self.devices:
                warm_up(self.states[index], *self._scratch)
        if self.workers == 0:
            threads = self.threads or numba.config.NUMBA_NUM_THREADS
            self.slices = [tuple((0, 0 if i in self.devices else int(p.n_agents))
                                 for i, p in enumerate(self.populations))]
            self._claims = ChunkClaims.local(tuple(self.slices), self.chunk)
            self._stale_parts = _stale_parts(self)
            self._order = np.zeros(1, dtype=np.int64)
            numba.set_num_threads(threads)
            for state in self.states:
                warm_up(state, *self._scratch)
            self.metrics.watch([os.getpid()])
            return
        self.slices = _worker_slices(self.populations, self.devices, self.workers)
        metrics = self.metrics
        self.worker_group = WorkerGroup(
            self._shm, self.states, self.workers, self.slices, self.chunk,
            on_pids_changed=lambda pids: metrics.watch([os.getpid()] + pids))
        self._claims = ChunkClaims.create(self._shm, tuple(self.slices), self.chunk)
        self._stale_parts = _stale_parts(self)
        self.worker_group.start()

    def close(self) -> None:
        """Stop the workers and remove every segment and semaphore of this run. Safe from any
        thread and more than once; waits for a call in progress in another thread. In a
        forked child it only lets go of the engine: the run and its workers are the parent's."""
        if os.getpid() != self._pid:
            self._release(stop_workers=False)
            return
        with self._guard.exclusive():
            self._release(stop_workers=True)

    def _release(self, stop_workers: bool) -> None:
        if self._shm is None:
            return
        try:
            if self.worker_group is not None and stop_workers:
                self.worker_group.stop(self.control)
        finally:
            self.worker_group = None      # its semaphores and journals close with it
            self.devices.clear()          # frees device memory (GPU arrays) with the run
            for name in ("state", "states", "control", "population_states", "_actions_view",
                         "_claims", "metrics"):
                self.__dict__.pop(name, None)
            self._shm.close()
            self._shm = None
            self._restore_signal_handlers()

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
        action and are flagged stale (``last_tick.stale_agents``, by reason in
        ``last_tick.stale_reasons``; :attr:`stale`), and the degradation controller picks
        the next tick's level from this tick's utilisation.
        ``level`` forces a degradation level for this tick and ``stale`` (agent indices) the
        set of agents that keep their last action (replay; one population, ``workers=0``).
        Invalid observations and arguments raise :class:`ObservationError` or
        :class:`ConfigError` before any state changes; a step while another thread is inside
        the engine raises :class:`EngineStateError`.
        """
        self._require_started("Engine.step")
        with self._guard.call("Engine.step"):
            return self._step(obs, checked_budget(budget_s, "Engine.step"),
                              checked_level(level, "Engine.step"), stale)

    def _require_started(self, what: str) -> None:
        if os.getpid() != self._pid:
            raise EngineStateError(
                f"{what}: this engine belongs to process {self._pid}; a forked child (pid "
                f"{os.getpid()}) cannot use it: start an engine in the child instead")
        if self._shm is None:
            raise EngineStateError(f"{what}: call start() first (or use `with Engine(...)`)")

    def _step(self, obs: Any, budget_s: float | None, level: int | None,
              stale: np.ndarray | None) -> Any:
        self._require_started("Engine.step")       # closed by another thread meanwhile?
        started = time.monotonic()
        copied = copied_observations(obs, self.state.obs, self._num_obs, self._single)
        per_population = copied or self.split_observations(obs)
        self._take_resets()
        if level is None:
            level = self.controller.level if (self.controller and budget_s is not None) else 0
        if stale is not None:
            stale = _forced_stale(stale, self.workers, len(self.populations), self.n_agents)
        deadline = float("inf") if budget_s is None else started + float(budget_s) * (
            ROTATING_BUDGET if level == ROTATING_FRACTION else 1.0)
        margin = (self.controller.margin_s(self.chunk, budget_s) if self.controller else 0.0)
        for state, pop_obs in zip(self.states, per_population, strict=True):
            if copied is None:
                state.obs[:] = pop_obs
            state.stale[:] = 1               # cleared chunk by chunk as results are written
        control = self.control
        control.set("tick", self.tick)
        control.set("deadline", deadline)
        control.set("level", level)
        control.set("margin", margin)
        if stale is not None:
            if 0 in self.devices:
                self.devices[0].step_forced(self.tick, stale, level)
            else:
                process_forced(self.state, stale, self.chunk, self.tick, level, *self._scratch)
        elif self.worker_group is None:
            self._claims.start_tick()
            process_tick(self.states, self.slices[0], self.chunk, self.tick, deadline,
                         *self._scratch, self._claims, level=level, order=self._order,
                         margin=margin)
            self.devices.step(self.tick, deadline, level)
        else:
            until = (started + NO_BUDGET_TIMEOUT_S if budget_s is None
                     else deadline + self.worker_group.grace_s(budget_s))
            self._claims.start_tick()
            released = self.worker_group.release(control)
            self.devices.step(self.tick, deadline, level)
            self.worker_group.wait(released, until)
        wall = time.monotonic() - started
        reasons = _stale_counts(self, level, forced=stale is not None)
        stale = reasons.total
        busy = tuple(control.busy(w) for w in range(self.workers))
        if self.controller is not None and budget_s is not None:
            self.controller.observe_tick(wall, budget_s, self.n_agents - stale, self.n_agents,
                                         max(1, self.workers), sum(busy) or None)
        if self.worker_group is not None:
            self.worker_group.note_tick(wall, self.n_agents - stale)
        self.last_tick = TickInfo(tick=self.tick, wall_s=wall, deadline_s=budget_s,
                                  stale_agents=stale, level=level, stale_reasons=reasons)
        self.metrics.record(wall, budget_s, level, reasons, busy)
        self.tick += 1
        if self.stop_requested is not None and not self._in_run:
            self._honour_stop()
        if self._single:
            return self._actions_view
        actions = [p.actions for p in self.population_states.values()]
        if isinstance(obs, Mapping):
            return dict(zip(self.population_states, actions, strict=True))
        return actions

    def reset(self, agents: np.ndarray | None = None, population: str | int = 0,
              keep_action: bool = True) -> None:
        """Start a new episode for ``agents`` (indices; default all) of a population: beliefs
        back to uniform; the next tick's prior is ``B[last action] @ uniform`` (pymdp's
        ``Agent.reset()``), or D with ``keep_action=False`` (as ``Agents.reset``)."""
        self._require_started("Engine.reset")
        with self._guard.call("Engine.reset"):
            self._reset(agents, population, keep_action)

    def _reset(self, agents: np.ndarray | None, population: str | int,
               keep_action: bool) -> None:
        index = population_index(self.populations, population)
        pop = self.population(index)
        idx = select_agents(agents, pop.n_agents)
        if index in self.devices:
            self.devices[index].sync()      # the last actions kept are the device's
        _reset_agents(pop, idx, keep_action)
        self._note_reset(index, np.arange(pop.n_agents)[idx], keep_action)
        if index in self.devices:
            self.devices[index].load_from_shared(idx)

    # ------------------------------------------------------------------------- snapshots
    def agent_state(self, population: str | int | None = None) -> dict[str, np.ndarray]:
        """Copies of every agent's state between ticks (beliefs as stored: codes when
        quantized), enough to continue a run with :meth:`load_agent_state`; of the one
        population, or of ``population`` (name or position) when there are several."""
        self._require_started("Engine.agent_state")
        with self._guard.call("Engine.agent_state"):
            state = self.population(self._chosen_index(population, "agent_state")).state
            self.sync()
            return {name: np.array(getattr(state, name)) for name in state.spec.state_arrays()}

    def load_agent_state(self, arrays: Mapping[str, np.ndarray], tick: int,
                         population: str | int | None = None) -> None:
        """Restore :meth:`agent_state` output (of ``population`` when there are several);
        the next step is tick ``tick``. All arrays are checked before any is written."""
        self._require_started("Engine.load_agent_state")
        tick = checked_tick(tick, "load_agent_state")
        with self._guard.call("Engine.load_agent_state"):
            index = self._chosen_index(population, "load_agent_state")
            state = self.population(index).state
            _check_state_arrays(arrays, state, state.spec.state_arrays())
            for name in state.spec.state_arrays():
                getattr(state, name)[...] = arrays[name]
            state.stale[:] = 0
            self.tick = tick
            if index in self.devices:
                self.devices[index].load_from_shared()

    def sync(self) -> None:
        """Copy every device-resident population's state into shared memory now (it is also
        copied a band of rows a tick, and whole before it is read through the engine)."""
        self.devices.sync()

    # ------------------------------------------------------------------------- state
    @property
    def run_id(self) -> str | None:
        """This run's id (the ``agentloop-<run id>-`` prefix in /dev/shm); None when closed."""
        return None if self._shm is None else self._shm.run_id

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (empty with ``workers=0``)."""
        return [] if self.worker_group is None else self.worker_group.pids

    @property
    def respawns(self) -> int:
        """Worker processes replaced since start (dead or hung)."""
        return 0 if self.worker_group is None else self.worker_group.respawns

    @property
    def recovered_commits(self) -> int:
        """Commits finished by the master from the journal of a worker that died in them."""
        return 0 if self.worker_group is None else self.worker_group.recovered_commits


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


def _checked_populations(model: GenerativeModel | None, n_agents: int,
                         populations: Sequence[Population] | None, config: InferenceConfig,
                         workers: int, chunk: int, beliefs: str,
                         cluster: str | None) -> list[Population]:
    """The engine's populations (one ``"main"`` population from ``model`` and ``n_agents``),
    after the checks of the arguments that come before them, in this order."""
    if cluster is not None:
        raise ConfigError("Engine: cluster=... is make_engine(..., cluster=...) now "
                          "(from engine import make_engine)")
    if not _is_int(workers) or workers < 0:
        raise ConfigError(f"Engine: workers must be an int >= 0, got {workers!r}")
    if not _is_int(chunk) or chunk < 1:
        raise ConfigError(f"Engine: chunk must be an int >= 1, got {chunk!r}")
    if beliefs not in ("float", "uint16", "uint8"):
        raise ConfigError(f"Engine: beliefs must be 'uint16', 'uint8' or 'float', "
                          f"got {beliefs!r}")
    if (model is None) == (populations is None):
        raise ConfigError("Engine: give either model and n_agents, or populations")
    if populations is None:
        if not isinstance(n_agents, (int, np.integer)) or n_agents < 0:
            raise ConfigError(f"Engine: n_agents must be an int >= 0, got {n_agents!r}")
        populations = [Population("main", model, int(n_agents), config)]
    return list(populations)


def _reset_agents(pop: PopulationState, idx: np.ndarray | slice, keep_action: bool) -> None:
    """Beliefs back to uniform for agents ``idx`` of ``pop``; unless ``keep_action``, the
    next tick's prior is D."""
    state = pop.state
    if state.codec_instance is not None:
        state.qs[idx] = 0                            # a log code of 0 everywhere is uniform
    else:
        offsets = pop.checker.layout.state_offset
        for f in range(len(offsets) - 1):
            state.qs[idx, offsets[f]:offsets[f + 1]] = 1.0 / (offsets[f + 1] - offsets[f])
    if not keep_action:
        state.started[idx] = 0
        state.prev_action[idx] = 0


def _stale_parts(engine: Engine) -> tuple[list[list[tuple[int, int, int]]], list[int]]:
    """How each population is stepped, for :func:`engine.runtime.stale.count_stale` (fixed
    once the engine has started): in its workers' slices, or whole by the master
    (``workers=0``, a device population in its device's chunks, one failed over to the CPU);
    and each population's chunk."""
    parts = []
    for p, pop in enumerate(engine.populations):
        mine = [(lo, hi, MASTER if engine.workers == 0 else w)
                for w, (lo, hi) in enumerate(s[p] for s in engine.slices) if hi > lo]
        parts.append(mine or [(0, int(pop.n_agents), MASTER)])
    chunks = [engine.devices[p].chunk if p in engine.devices else engine.chunk
              for p in range(len(engine.populations))]
    return parts, chunks


def _stale_counts(engine: Engine, level: int, forced: bool) -> StaleCounts:
    """The last tick's stale agents by reason: a worker failed the tick if it did not finish
    its stepping (its heartbeat, cleared at release, does not name the tick: it died, hung,
    or was starting again)."""
    failed = [] if engine.worker_group is None else [
        w for w in range(engine.workers) if engine.control.heartbeat(w) != engine.tick]
    parts, chunks = engine._stale_parts
    return count_stale([state.stale for state in engine.states], parts, chunks, engine.tick,
                       level, failed, forced)


def _worker_slices(populations: Sequence[Population], on_device: Any,
                   workers: int) -> list[tuple[tuple[int, int], ...]]:
    """Worker ``w``'s ``(lo, hi)`` of each population (none of a device population)."""
    bounds = [np.linspace(0, 0 if i in on_device else int(p.n_agents), workers + 1).astype(int)
              for i, p in enumerate(populations)]
    return [tuple((int(b[w]), int(b[w + 1])) for b in bounds) for w in range(workers)]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_state_arrays(arrays: Mapping[str, np.ndarray], state: SharedState,
                        names: Sequence[str]) -> None:
    """Every array of an agent-state snapshot is there, with the population's shape and dtype
    (checked before any is written)."""
    for name in names:
        target = getattr(state, name)
        if name not in arrays:
            raise ConfigError(f"load_agent_state: missing array {name!r}")
        source = np.asarray(arrays[name])
        if source.shape != target.shape or source.dtype != target.dtype:
            raise ConfigError(f"load_agent_state: {name} must be {target.dtype} "
                              f"{target.shape}, got {source.dtype} {source.shape}")


def _forced_stale(stale: np.ndarray, workers: int, n_populations: int,
                  n_agents: int) -> np.ndarray | slice:
    """The agents a replayed tick keeps stale, checked: replay steps one population in the
    replaying process."""
    if workers != 0 or n_populations != 1:
        raise ConfigError("Engine.step: a forced stale set (replay) needs one population "
                          "and workers=0")
    return select_agents(stale, n_agents)
