"""The coordinator of a Ray cluster run: :class:`ClusterEngine` splits the agents into shards,
one Ray actor with a local ``Engine`` each, and drives them at a tick. How the deadline,
node failures, the tick log and several populations work: docs/architecture.md."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.cluster.events import CoordinatorState, ShardEvent, ShardTick
from engine.cluster.placement import (
    START_TIMEOUT_S,
    reserve_bundles,
    start_shard_actors,
    stop_shards,
    wait_until_placed,
)
from engine.cluster.ray_connection import _ray, connect
from engine.cluster.sharding import shard_parts, shard_slices
from engine.cluster.supervisor import ShardSupervisor
from engine.errors import ClusterError, ConfigError, EngineStateError
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents, select_agents
from engine.runtime.arguments import checked_budget, checked_level
from engine.runtime.degrade import DegradeController, controller_for
from engine.runtime.engine import Engine
from engine.runtime.engine_base import EngineBase
from engine.runtime.learnt_params import learns
from engine.runtime.metrics import TickMetrics
from engine.runtime.population import Population, check_populations, population_index
from engine.runtime.shm import sweep_stale
from engine.runtime.stale import StaleCounts
from engine.runtime.tick import TickInfo

#: without a budget, how long the coordinator waits for a shard before counting it late
NO_BUDGET_TIMEOUT_S = 120.0
#: default ticks between the coordinator's belief checkpoints of every shard
DEFAULT_CHECKPOINT_EVERY = 50


def _check_arguments(model: GenerativeModel | None, n_agents: int,
                     populations: Sequence[Population] | None, workers_per_shard: int,
                     checkpoint_every: int, grace_s: float, cpus_per_shard: float,
                     engine_kwargs: Mapping[str, Any]) -> None:
    if "id_offset" in engine_kwargs:
        raise ConfigError("ClusterEngine: agent ids are numbered by the coordinator")
    if (model is None) == (populations is None):
        raise ConfigError("ClusterEngine: give either model and n_agents, or populations")
    if populations is None and (not isinstance(n_agents, (int, np.integer))
                                or n_agents < 1):
        raise ConfigError(f"ClusterEngine: n_agents must be an int >= 1, got {n_agents!r}")
    if workers_per_shard < 0:
        raise ConfigError(f"ClusterEngine: workers_per_shard must be >= 0, got "
                          f"{workers_per_shard}")
    if checkpoint_every < 0 or grace_s < 0 or cpus_per_shard <= 0:
        raise ConfigError("ClusterEngine: checkpoint_every and grace_s must be >= 0 and "
                          "cpus_per_shard > 0")


def _wait_for_answers(ray: Any, sent: dict[Any, int], until: float
                      ) -> dict[int, tuple[Any, float]]:
    """Wait until ``until`` (monotonic) for the calls ``sent`` (ref -> shard): each shard that
    answered, with its call and when the answer was seen."""
    arrived: dict[int, tuple[Any, float]] = {}
    pending = list(sent)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1,
                                  timeout=max(0.0, until - time.monotonic()))
        if not ready:
            break
        now = time.monotonic()
        for ref in ready:
            arrived[sent[ref]] = (ref, now)
    return arrived


def _gather(refs: list[Any], what: str) -> list[Any]:
    """The shards' answers to ``refs``; a ClusterError naming ``what`` if one did not come."""
    ray = _ray()
    try:
        return ray.get(refs, timeout=NO_BUDGET_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - reported with what failed
        raise ClusterError(f"ClusterEngine.{what}: a shard did not answer "
                           f"({type(exc).__name__}: {exc})") from exc


def _require_all_shards(shard_status: list[str], what: str) -> None:
    dead = [s for s in range(len(shard_status)) if shard_status[s] == "dead"]
    if dead:
        raise ClusterError(f"ClusterEngine.{what}: shards {dead} are dead")


def shard_stale(status: str, result: Mapping[str, Any] | None,
                slices: Sequence[tuple[int, int]]) -> StaleCounts:
    """Shard's stale agents in the last tick by reason: its own engine's when it answered;
    else every agent of its ``slices``, ``deadline`` when it was late (or still busy with a
    dropped tick), ``worker`` when it was lost, restoring or dead."""
    if result is not None:
        return StaleCounts.from_dict(result["stale_reasons"])
    agents = sum(hi - lo for lo, hi in slices)
    return StaleCounts(deadline=agents) if status in ("late", "busy") else StaleCounts(
        worker=agents)


def _check_state_arrays(arrays: Mapping[str, np.ndarray], n: int) -> None:
    for name in Engine.STATE_ARRAYS:
        if name not in arrays:
            raise ConfigError(f"load_agent_state: missing array {name!r}")
        if len(np.asarray(arrays[name])) != n:
            raise ConfigError(f"load_agent_state: {name} must have {n} rows, got "
                              f"{len(np.asarray(arrays[name]))}")


class ClusterEngine(EngineBase):
    """Populations sharded over Ray actors, one local ``Engine`` each, driven at a tick.

    Args:
        model, n_agents, populations, config, seed, chunk, beliefs: as for ``Engine`` (one
            model, or several populations; every shard hosts a slice of each population).
        shards: number of shards (one actor each); default: the number of alive nodes.
        address: the cluster to join (see :func:`connect`); None uses the current connection
            or starts a local Ray.
        workers_per_shard: worker processes of each shard's engine (0: in the actor).
        cpus_per_shard: CPUs each shard reserves (placement group bundle); with
            ``workers_per_shard=0`` also the shard's Numba threads unless ``threads`` is given.
        degrade: the coordinator's degradation controller (True: the default one).
        checkpoint_every: ticks between belief checkpoints kept for restarting shards.
        max_restarts: how often Ray restarts a dead shard actor (-1: always).
        grace_s: how long past the deadline the coordinator still accepts a shard's answer.
        runtime_env: Ray runtime environment for the shard actors.
        engine_kwargs: other ``Engine`` keywords (``threads``).
    """

    def __init__(self, model: GenerativeModel | None = None, n_agents: int = 0,
                 shards: int | None = None,
                 address: str | None = None, workers_per_shard: int = 0,
                 config: InferenceConfig | None = None, seed: int = 0, chunk: int = 1024,
                 beliefs: str = "uint16", cpus_per_shard: float = 1.0,
                 degrade: DegradeController | bool = True,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, max_restarts: int = 3,
                 grace_s: float = 0.01, runtime_env: Mapping[str, Any] | None = None,
                 populations: Sequence[Population] | None = None,
                 **engine_kwargs: Any) -> None:
        _check_arguments(model, n_agents, populations, workers_per_shard, checkpoint_every,
                         grace_s, cpus_per_shard, engine_kwargs)
        self.config = config or InferenceConfig()
        if populations is None:
            populations = [Population("main", model, int(n_agents), self.config)]
        self.populations: list[Population] = list(populations)
        configs = check_populations(self.populations, self.config)
        for p, c in zip(self.populations, configs, strict=True):
            if learns(c):
                raise ConfigError(f"ClusterEngine: population {p.name!r} learns (or values "
                                  f"parameter information gain); learning populations run "
                                  f"in a local Engine, not on cluster shards yet")
        # validates each model and config as Engine would, and checks observations per tick
        self.checkers = [Agents(p.model, 1, c, seed=seed)
                          for p, c in zip(self.populations, configs, strict=True)]
        self.model = self.populations[0].model
        self.n_agents = sum(int(p.n_agents) for p in self.populations)
        if self.n_agents < 1:
            raise ConfigError("ClusterEngine: the populations have no agents")
        #: each population's first global agent id (numbered on in population order)
        self.first_ids = [int(o) for o in np.cumsum(
            [0] + [int(p.n_agents) for p in self.populations[:-1]])]
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.beliefs = beliefs
        self.workers = int(workers_per_shard)
        self.shards = shards
        self.address = address
        self.cpus_per_shard = float(cpus_per_shard)
        self.checkpoint_every = int(checkpoint_every)
        self.max_restarts = int(max_restarts)
        self.grace_s = float(grace_s)
        self.runtime_env = dict(runtime_env) if runtime_env else None
        if workers_per_shard == 0 and engine_kwargs.get("threads") is None:
            engine_kwargs["threads"] = max(1, int(cpus_per_shard))
        self._engine_kwargs = dict(workers=self.workers, config=self.config, seed=self.seed,
                                   chunk=self.chunk, beliefs=beliefs, **engine_kwargs)
        self.controller = controller_for(degrade, [
            (checker.layout.n_factors, c.num_iter, c.policy_len)
            for checker, c in zip(self.checkers, configs, strict=True)])
        self.tick = 0
        self.last_tick: TickInfo | None = None
        self.last_shards: list[ShardTick] = []
        self._supervisor = ShardSupervisor()
        self.stop_requested: int | None = None
        self._in_run = False
        self._started = False
        self._owns_connection = False
        self._actors: list[Any] = []
        self._pg: Any = None
        self.resync_tick: int | None = None

    # ------------------------------------------------------------------------- lifetime
    def start(self) -> ClusterEngine:
        """Connect, place one actor per shard and wait until every shard is warm."""
        if self._started:
            return self
        ray = _ray()
        if not ray.is_initialized():
            connect(self.address)
            self._owns_connection = True
        self._started = True
        self._install_signal_handlers()
        try:
            self._start(ray)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, ray: Any) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        shards = int(self.shards if self.shards is not None else max(1, len(nodes)))
        if shards < 1 or self.n_agents < shards:
            raise ConfigError(f"ClusterEngine: need 1 <= shards <= n_agents, got "
                              f"shards={shards}, n_agents={self.n_agents}")
        #: each shard's ``(lo, hi)`` slice of each population (local indices)
        self.slices = shard_slices(self.populations, shards, self.chunk)
        #: with one population, each shard's slice of it
        self.bounds = [shard[0] for shard in self.slices] if self._single else None
        self.shards = shards
        self._pg, strategy = reserve_bundles(self.shards, self.cpus_per_shard, len(nodes))
        self.placement_strategy = strategy
        wait_until_placed(ray, self._pg, self.shards, self.cpus_per_shard, strategy,
                          len(nodes))
        self._model_refs = [ray.put(p.model) for p in self.populations]
        self._actors = start_shard_actors(
            self._pg,
            [shard_parts(self.populations, self.slices[s], self.first_ids)
             for s in range(self.shards)],
            self._engine_kwargs, cpus_per_shard=self.cpus_per_shard,
            max_restarts=self.max_restarts, runtime_env=self.runtime_env)
        # the models' references go to the actors in a call, not in their constructor (whose
        # arguments Ray would have to keep for a restart), and stay alive in _model_refs
        self.shard_info = ray.get([a.start.remote(self._model_refs) for a in self._actors],
                                  timeout=START_TIMEOUT_S)
        #: per population: the last observations, held actions and stale flags
        self.states = [CoordinatorState(int(p.n_agents), c.layout.n_modalities,
                                        c.layout.n_factors)
                       for p, c in zip(self.populations, self.checkers, strict=True)]
        self.state = self.states[0]
        self._actions_views = []
        for state in self.states:
            view = state.actions.view()
            view.setflags(write=False)
            self._actions_views.append(view)
        self._supervisor.attach(self._actors, self.states, self.slices, self._model_refs)
        self._hop = [0.002] * self.shards
        self.metrics = TickMetrics(self.n_agents)
        self.metrics.watch([os.getpid()])

    def close(self) -> None:
        """Stop every shard (each removes its shared memory), remove the placement group,
        and disconnect if this engine connected."""
        if not self._started:
            return
        ray = _ray()
        try:
            stop_shards(ray, self._actors, self._pg)
        finally:
            self._actors = []
            self._pg = None
            self._started = False
            self._supervisor.release()
            self.__dict__.pop("_model_refs", None)
            sweep_stale()                  # a shard killed on this node leaves its segments
            if self._owns_connection and ray.is_initialized():
                ray.shutdown()
            self._owns_connection = False
            self._restore_signal_handlers()

    def _mark_stale(self, s: int) -> None:
        for state, (lo, hi) in zip(self.states, self.slices[s], strict=True):
            state.stale[lo:hi] = 1

    def __enter__(self) -> ClusterEngine:
        return self.start()

    @property
    def shard_status(self) -> list[str]:
        """Each shard's health: ``ok``, ``restoring`` (lost, being restored) or ``dead``."""
        return self._supervisor.status

    @property
    def events(self) -> list[ShardEvent]:
        """Every shard failure and recovery so far."""
        return self._supervisor.events

    @property
    def restarts(self) -> int:
        """How many times a shard was lost and restored (or given up)."""
        return self._supervisor.restarts

    # ------------------------------------------------------------------------- stepping
    def step(self, obs: Any, budget_s: float | None = None, level: int | None = None) -> Any:
        """Advance every agent one tick across the shards; same contract as ``Engine.step``:
        with one population ``(n, n_modalities)`` observations in, a read-only ``(n,
        n_factors)`` view of the actions out (overwritten by the next tick); with several, a
        list (or a dict keyed by population name) of such arrays in and out.

        Agents of a shard that is late, failed or restoring keep their last action and are
        flagged stale (:attr:`stale`, ``last_tick.stale_agents``, :attr:`last_shards`).
        """
        if not self._started:
            raise EngineStateError("ClusterEngine.step: call start() first (or use `with`)")
        ray = _ray()
        budget_s = checked_budget(budget_s, "ClusterEngine.step")
        level = checked_level(level, "ClusterEngine.step")
        split = self.split_observations(obs)
        parts = [np.asarray(part) for part in split]
        if level is None:
            level = self.controller.level if (self.controller and budget_s is not None) else 0
        started = time.monotonic()
        deadline = None if budget_s is None else started + float(budget_s)
        supervisor = self._supervisor
        supervisor.poll(self.tick)
        tick = self.tick
        checkpoint = (self.checkpoint_every > 0 and tick > 0
                      and tick % self.checkpoint_every == 0)
        resync = supervisor.resync_due
        supervisor.resync_due = False
        sent, send_time = supervisor.send_tick(parts, tick, deadline, self._hop, level,
                                               checkpoint, resync)
        until = (started + NO_BUDGET_TIMEOUT_S if deadline is None
                 else deadline + self.grace_s)
        arrived = _wait_for_answers(ray, sent, until)
        status: dict[int, str] = {}
        walls: dict[int, float] = {}
        hops: dict[int, float] = {}
        reasons = StaleCounts()
        for s in range(self.shards):
            status[s], result = supervisor.outcome(ray, s, arrived, sent, send_time, tick)
            reasons = reasons + shard_stale(status[s], result, self.slices[s])
            if result is None:
                self._mark_stale(s)
                continue
            for p, (state, (lo, hi)) in enumerate(zip(self.states, self.slices[s],
                                                      strict=True)):
                state.actions[lo:hi] = result["actions"][p]
                state.stale[lo:hi] = result["stale"][p]
            walls[s] = float(result["wall_s"])
            hop = max(0.0, arrived[s][1] - send_time[s] - float(result["service_s"]))
            hops[s] = hop
            self._hop[s] = hop if self.tick == 0 else 0.8 * self._hop[s] + 0.2 * hop
        for state, part in zip(self.states, parts, strict=True):
            state.obs[...] = part
        wall = time.monotonic() - started
        n_stale = reasons.total
        if self.controller is not None and budget_s is not None:
            self.controller.observe_tick(wall, budget_s, self.n_agents - n_stale, self.n_agents,
                                         self.shards)
        self.last_shards = [ShardTick(s, status[s], walls.get(s), hops.get(s))
                            for s in range(self.shards)]
        if resync:
            self.resync_tick = tick - 1
        self.last_tick = TickInfo(tick=tick, wall_s=wall, deadline_s=budget_s,
                                  stale_agents=n_stale, level=level, stale_reasons=reasons)
        self.metrics.record(wall, budget_s, level, reasons,
                            tuple(walls.get(s, 0.0) for s in range(self.shards)))
        self.tick += 1
        if self.stop_requested is not None and not self._in_run:
            self._honour_stop()
        if self._single:
            return self._actions_views[0]
        if isinstance(obs, Mapping):
            return {p.name: view for p, view in zip(self.populations, self._actions_views,
                                                     strict=True)}
        return list(self._actions_views)

    # ------------------------------------------------------------------------- state
    @property
    def actions(self) -> Any:
        """The actions the coordinator holds (what the last tick returned): an array, or a
        list of arrays in population order when there are several populations."""
        return self._actions_views[0] if self._single else list(self._actions_views)

    def _population_index(self, population: str | int | None, what: str) -> int:
        if population is None:
            if not self._single:
                raise EngineStateError(f"ClusterEngine.{what}: this engine has "
                                       f"{len(self.populations)} populations; name one "
                                       f"(population=...)")
            return 0
        return population_index(self.populations, population)


    def agent_state(self, population: str | int | None = None) -> dict[str, np.ndarray]:
        """Every agent's state between ticks (of ``population`` when there are several),
        gathered from the shards in agent order (waits for a restoring shard)."""
        index = self._population_index(population, "agent_state")
        _require_all_shards(self.shard_status, "agent_state")
        refs = [self._supervisor.call(s, "agent_state") for s in range(len(self._actors))]
        parts = _gather(refs, "agent_state")
        return {name: np.concatenate([p[index][name] for p in parts])
                for name in Engine.STATE_ARRAYS}

    def load_agent_state(self, arrays: Mapping[str, np.ndarray], tick: int,
                         population: str | int | None = None) -> None:
        """Restore :meth:`agent_state` output (of ``population`` when there are several) on
        every shard; the next step is tick ``tick``. Each shard's whole state afterwards
        becomes its checkpoint."""
        index = self._population_index(population, "load_agent_state")
        _require_all_shards(self.shard_status, "load_agent_state")
        _check_state_arrays(arrays, int(self.populations[index].n_agents))
        ray = _ray()
        refs = []
        for s in range(self.shards):
            lo, hi = self.slices[s][index]
            loads: list[dict[str, np.ndarray] | None] = [None] * len(self.populations)
            loads[index] = {name: np.asarray(arrays[name])[lo:hi]
                            for name in Engine.STATE_ARRAYS}
            refs.append(self._supervisor.call(s, "load_agent_state", loads, int(tick)))
        for s, whole in enumerate(_gather(refs, "load_agent_state")):
            self._supervisor.checkpoints[s] = (ray.put(whole), int(tick))
        state = self.states[index]
        state.actions[...] = arrays["actions"]
        state.stale[:] = 0
        self.tick = int(tick)

    def reset(self, agents: np.ndarray | None = None, population: str | int = 0,
              keep_action: bool = True) -> None:
        """Start a new episode for ``agents`` (indices within the population; default all)
        of a population (name or position); ``keep_action`` as in ``Engine.reset``."""
        index = self._population_index(population, "reset")
        idx = select_agents(agents, int(self.populations[index].n_agents))
        refs = []
        for s in range(self.shards):
            lo, hi = self.slices[s][index]
            local = idx[(idx >= lo) & (idx < hi)] - lo
            if local.size and self.shard_status[s] == "ok":
                refs.append(self._supervisor.call(s, "reset", index, local, keep_action))
        _gather(refs, "reset")
        self.states[index].actions[idx] = 0

    def resync_snapshot(self) -> dict[str, np.ndarray] | None:
        """After a shard was restored: every agent's state before the tick it resumed at
        (tick :attr:`resync_tick` + 1), or None if a shard could not give it (one population:
        what the tick log records)."""
        refs = self._supervisor.take_resync_refs()
        if len(refs) != self.shards or not self._single:
            return None
        try:
            parts = _ray().get([refs[s] for s in range(self.shards)], timeout=NO_BUDGET_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a shard lost again: no resync point this time
            return None
        if any(p is None for p in parts):
            return None
        return {name: np.concatenate([p[0][name] for p in parts]) for name in Engine.STATE_ARRAYS}

    def actor(self, shard: int) -> Any:
        """The Ray actor handle of ``shard`` (for inspection and tests)."""
        return self._actors[shard]

    def shard_infos(self) -> list[dict[str, Any]]:
        """Where each shard runs now (pid, node id, shared-memory run id, restarted, ready);
        waits for shards that are restarting."""
        return _gather([a.info.remote() for a in self._actors], "shard_infos")

