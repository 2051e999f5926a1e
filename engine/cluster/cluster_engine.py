"""Scale out across machines on Ray: one local :class:`~engine.loop.Engine` per node.

``ClusterEngine(model, n_agents, shards=3, address="ray://head:10001")`` splits the agents into
``shards`` contiguous slices and starts one Ray actor per slice (a placement group spreads them
over the nodes: ``STRICT_SPREAD`` when there are at least as many nodes as shards, else
``SPREAD``). Each actor hosts an ordinary agentloop ``Engine`` for its slice, with its own
shared memory and ``workers_per_shard`` worker processes, and numbers its agents from the
slice's start (``Engine(id_offset=...)``), so every agent keeps its global id and its random
stream: a cluster run gives exactly the actions of a single-machine run with the same seed.

The process that creates the ``ClusterEngine`` is the **coordinator**; it drives the tick:

* ``step(obs, budget_s)`` sends every shard its own rows of the observations (Ray inlines a
  small array in the call and puts a large one in its object store) with the tick's budget and
  degradation level, and gathers each shard's actions and stale flags back as NumPy. The
  coordinator owns the degradation controller (the same
  :class:`~engine.degrade.DegradeController` as ``Engine``) and passes the level down;
  shards run with ``degrade=False`` and apply the level they are given.
* **Deadline rule.** A shard runs its engine with the budget that is left when the call is
  sent, less its measured round-trip overhead (``hop_s``), counted from when the call arrives.
  The coordinator waits until ``start + budget_s + grace_s``; a shard that has not answered by
  then is *late*: its agents are stale for the tick (they keep the last actions the coordinator
  holds for them, which is what the world gets). The late call still finishes on the shard
  (Ray runs a caller's calls to one actor in order), so the coordinator never waits for it: it
  drops the result and tells the shard, with its next call, to **discard** that tick. Until the
  late call has finished the shard gets no new tick (*busy*: its agents stay stale, and the
  coordinator does not wait for it, so one slow or restarting shard costs the other shards one
  overrun tick, not one per tick). Before a
  budgeted tick a shard copies its agents' state between ticks (beliefs, previous actions,
  ``started``, actions) into a preallocated buffer; discarding restores it. So a late shard's
  agents are stale exactly as in ``Engine`` (not stepped at all), and the tick log replays.
* **Node failure.** Shard actors are created with ``max_restarts``. Every ``checkpoint_every``
  ticks each shard returns (as a second, separately fetched result of its step call) its
  agents' state as it was before that tick; the coordinator fetches it and keeps it in the
  object store on its own node. When a call fails because the actor died, the shard is
  *restoring*: Ray restarts the actor (same slice, same id offset), the coordinator sends it the
  last checkpoint (``load_agent_state``) with the actions the world last executed as its
  previous actions, and until that call completes the shard gets no ticks and its agents are
  stale (recorded). A restarted actor refuses to step until it has been restored, so a call
  queued while it restarted cannot run on blank beliefs. Ticks between the checkpoint and the
  failure are lost for that shard's agents; nothing else stops. After ``MAX_RESTORE_FAILURES``
  consecutive failed restores the shard is ``dead`` (its agents stay stale; see
  :attr:`ClusterEngine.shard_status`).
* **Tick log.** :class:`ClusterRecorder` writes the same tick-log format as
  :class:`~engine.recording.TickRecorder` (one log, written by the coordinator), adds per-tick
  timings ``shards_late``, ``shards_down`` and ``hop_s``, and after a shard is restored writes
  a belief snapshot of every agent as the restored tick starts, so ``agentloop replay --from``
  that tick verifies the rest of the run (a replay from before it reports a desync at the
  restore, since reloading an older checkpoint is not something replay re-enacts).

**Several populations.** ``ClusterEngine(populations=[Population(...), ...])`` gives every
shard a slice of each population (:func:`population_bounds`; a population smaller than the
shard count puts one agent on each of the first shards), so one actor per node hosts one
``Engine`` for all of them; agent ids are numbered across populations in order, as in a single
engine (``Engine(id_offset=[...])`` gives a shard's slices their global ids). ``step`` then
takes and returns a list or a dict of arrays, as ``Engine.step`` does; ``agent_state``,
``load_agent_state`` and ``reset`` take a ``population``. The tick log records one population.

Limits: a shard's budget is counted from when its call arrives (no clock synchronisation is
assumed).
``make_engine(..., cluster=ADDRESS)`` returns a ``ClusterEngine`` when an address is given and
an ``Engine`` otherwise; :func:`connect` joins a cluster (``"ray://host:10001"`` through Ray
Client, ``"host:6379"`` or ``"auto"`` directly, ``None`` starts a local one). Every node needs
agentloop importable (installed, or shipped with ``runtime_env={"py_modules": [...]}``).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import (
    ClusterError,
    ConfigError,
    EngineStateError,
    ShardNotRestored,
)
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents, select_agents
from engine.runtime.degrade import FULL, MAX_LEVEL, DegradeController, controller_for
from engine.runtime.engine import Engine
from engine.runtime.engine_base import EngineBase
from engine.runtime.metrics import TickMetrics
from engine.runtime.population import Population, check_populations, population_index
from engine.runtime.shm import sweep_stale
from engine.runtime.tick import TickInfo
from engine.ticklog.recorder import DEFAULT_SNAPSHOT_EVERY, TickRecorder

#: how long start() waits for every shard to be placed and warm (kernels loaded)
START_TIMEOUT_S = 600.0
#: without a budget, how long the coordinator waits for a shard before counting it late
NO_BUDGET_TIMEOUT_S = 120.0
#: how long close() waits for shards to remove their shared memory before killing them
CLOSE_TIMEOUT_S = 30.0
#: consecutive failed restores after which a shard is given up as dead
MAX_RESTORE_FAILURES = 5
#: default ticks between the coordinator's belief checkpoints of every shard
DEFAULT_CHECKPOINT_EVERY = 50
#: tries at joining a cluster through Ray Client (ray://) before giving up, and the back-off
CLIENT_CONNECT_ATTEMPTS = 3
CLIENT_CONNECT_BACKOFF_S = 1.0


def _ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("the cluster engine needs Ray: pip install 'agentloop[cluster]' "
                          "(or pip install 'ray[default]')") from exc
    return ray


def connect(address: str | None = None, **init_kwargs: Any) -> Any:
    """Join the Ray cluster at ``address`` (or start a local one with ``None``); return the
    context ``ray.init`` gives. Already connected: returns the current runtime context.

    ``"ray://host:10001"`` connects through Ray Client, ``"host:6379"`` / ``"auto"`` as a driver
    on a cluster node. ``init_kwargs`` go to ``ray.init`` (e.g. ``runtime_env``).
    """
    ray = _ray()
    if ray.is_initialized():
        return ray.get_runtime_context()
    if address in (None, "local"):
        init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("log_to_driver", True)
    if not (address or "").startswith("ray://"):
        return ray.init(address=address, **init_kwargs)
    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            return ray.init(address=address, **init_kwargs)
        except ConnectionError as exc:
            # The Ray Client proxy starts a server process per driver; on a busy node that start
            # fails now and then ("Starting Ray client server failed"), and a new one usually works.
            if attempt == CLIENT_CONNECT_ATTEMPTS:
                raise ConfigError(f"could not connect to the Ray cluster at {address!r} "
                                  f"after {attempt} attempts: {exc}") from exc
            warnings.warn(f"Ray Client connection to {address!r} failed (attempt {attempt} of "
                          f"{CLIENT_CONNECT_ATTEMPTS}), retrying: {exc}", stacklevel=2)
            time.sleep(CLIENT_CONNECT_BACKOFF_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def shard_bounds(n_agents: int, shards: int, chunk: int) -> list[tuple[int, int]]:
    """Contiguous ``(lo, hi)`` slices of ``n_agents`` for ``shards`` shards: even splits, moved
    to multiples of ``2 * chunk`` when every shard still gets agents (so the rotating-fraction
    level, which alternates chunks by their parity within a slice, updates the same agents as a
    single in-process engine), else plain even splits."""
    if shards < 1 or n_agents < shards:
        raise ConfigError(f"ClusterEngine: need 1 <= shards <= n_agents, got shards={shards}, "
                          f"n_agents={n_agents}")
    even = np.linspace(0, n_agents, shards + 1)
    step = 2 * chunk
    aligned = np.minimum(np.round(even / step) * step, n_agents).astype(int)
    aligned[-1] = n_agents
    edges = aligned if np.all(np.diff(aligned) > 0) else even.astype(int)
    return [(int(edges[s]), int(edges[s + 1])) for s in range(shards)]


def population_bounds(n_agents: int, shards: int, chunk: int) -> list[tuple[int, int]]:
    """One population's slices over ``shards`` shards: :func:`shard_bounds`, or, for a
    population smaller than the shard count, one agent on each of the first shards (the
    others host none of it)."""
    if n_agents >= shards:
        return shard_bounds(n_agents, shards, chunk)
    return [(min(s, n_agents), min(s + 1, n_agents)) for s in range(shards)]


@dataclasses.dataclass(frozen=True)
class _ShardPart:
    """A shard's slice ``lo..hi`` of one population (whose first agent has global id
    ``first_id``), and how that population is configured."""

    name: str
    lo: int
    hi: int
    first_id: int
    config: InferenceConfig | None
    backend: str | None


class _Shard:
    """The Ray actor of one shard: an ``Engine`` for a slice of every population (global ids
    kept)."""

    def __init__(self, model_refs: list[Any], parts: list[_ShardPart],
                 engine_kwargs: dict[str, Any]) -> None:
        import ray
        # the models come as ObjectRefs in a list that the coordinator keeps alive, so a
        # restarted actor can fetch them again (arguments Ray stored itself may be gone by then)
        models: list[GenerativeModel] = ray.get(list(model_refs))
        self.parts = list(parts)
        populations = [Population(part.name, model, part.hi - part.lo, part.config,
                                  part.backend) for part, model in zip(parts, models, strict=True)]
        self.engine = Engine(populations=populations, degrade=False,
                             id_offset=[part.first_id + part.lo for part in parts],
                             **engine_kwargs)
        self.engine.start()
        # the actor's signals belong to Ray (it stops workers with SIGTERM)
        self.engine._restore_signal_handlers()
        with warnings.catch_warnings():    # Ray's own property uses a deprecated accessor
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.ready = not self.restarted
        self._states = [self.engine.population(i).state for i in range(len(parts))]
        self._undo = [{name: np.empty_like(getattr(state, name)) for name in Engine.STATE_ARRAYS}
                      for state in self._states]
        self._undo_tick: int | None = None
        self.delay_s = 0.0                  # test hook: sleep before the next step

    def info(self) -> dict[str, Any]:
        """Where this shard runs: pid, node, shared-memory run id, whether it was restarted,
        and its slice of each population (``lo``/``hi``: of the first)."""
        import ray
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "run_id": self.engine.run_id, "lo": self.parts[0].lo, "hi": self.parts[0].hi,
                "slices": [(part.lo, part.hi) for part in self.parts],
                "restarted": self.restarted, "ready": self.ready}

    def _discard(self, tick: int | None) -> None:
        """Undo tick ``tick`` (the coordinator dropped its late result), if it is the last."""
        if tick is not None and self._undo_tick == tick:
            for state, undo in zip(self._states, self._undo, strict=True):
                for name in Engine.STATE_ARRAYS:
                    np.copyto(getattr(state, name), undo[name])
                state.stale[:] = 1
        self._undo_tick = None

    def _state(self) -> list[dict[str, np.ndarray]]:
        return [self.engine.agent_state(i) for i in range(len(self.parts))]

    def step(self, obs: list[np.ndarray], tick: int, budget_s: float | None, level: int,
             discard: int | None, checkpoint: bool
             ) -> tuple[dict[str, Any], list[dict[str, np.ndarray]] | None]:
        """Discard a dropped tick if told, copy the state first if ``checkpoint``, then step
        ``obs`` (this shard's rows of each population's observations) as tick ``tick``."""
        received = time.monotonic()
        if not self.ready:
            raise ShardNotRestored(f"shard {self._name()} was restarted and not restored")
        if self.delay_s:
            time.sleep(self.delay_s)
            self.delay_s = 0.0
        self._discard(discard)
        snapshot = self._state() if checkpoint else None
        if budget_s is not None:
            for state, undo in zip(self._states, self._undo, strict=True):
                for name in Engine.STATE_ARRAYS:
                    np.copyto(undo[name], getattr(state, name))
            self._undo_tick = tick
            budget_s = max(0.0, budget_s - (time.monotonic() - received))
        self.engine.tick = int(tick)
        self.engine.step(list(obs), budget_s=budget_s, level=level)
        wall = self.engine.last_tick.wall_s if self.engine.last_tick else 0.0
        result = {"tick": int(tick),
                  "actions": [np.array(state.actions) for state in self._states],
                  "stale": [np.array(state.stale) for state in self._states],
                  "wall_s": wall, "service_s": time.monotonic() - received}
        return result, snapshot

    def _name(self) -> str:
        return ", ".join(f"{part.name} {part.lo}..{part.hi}" for part in self.parts)

    def restore(self, arrays: list[Mapping[str, np.ndarray]] | None, tick: int,
                last_actions: list[np.ndarray]) -> dict[str, Any]:
        """Load a checkpoint (``None``: keep the initial state) so that the next tick is
        ``tick``, with ``last_actions`` (what the world last executed) as previous actions."""
        for i, state in enumerate(self._states):
            if arrays is not None:
                self.engine.load_agent_state(arrays[i], tick, population=i)
            state.actions[...] = last_actions[i]
            state.prev_action[...] = last_actions[i]
            state.stale[:] = 1
        self.engine.tick = int(tick)
        self._undo_tick = None
        self.ready = True
        return self.info()

    def agent_state(self, discard: int | None) -> list[dict[str, np.ndarray]]:
        """Each population's slice state between ticks (after discarding a dropped tick)."""
        self._discard(discard)
        return self._state()

    def load_agent_state(self, arrays: list[Mapping[str, np.ndarray] | None], tick: int,
                         discard: int | None) -> list[dict[str, np.ndarray]]:
        """Restore the given populations' slices (None: keep that population's state); the
        next tick is ``tick``. Returns the whole state, the coordinator's new checkpoint."""
        self._discard(discard)
        for i, part in enumerate(arrays):
            if part is not None:
                self.engine.load_agent_state(part, tick, population=i)
        self.engine.tick = int(tick)
        self._undo_tick = None
        self.ready = True
        return self._state()

    def reset(self, population: int, agents: np.ndarray, discard: int | None) -> None:
        """A new episode for local agent indices ``agents`` of population ``population``."""
        self._discard(discard)
        self.engine.reset(agents, population=population)

    def set_delay(self, seconds: float) -> None:
        """Test hook: make the next step sleep ``seconds`` before stepping."""
        self.delay_s = float(seconds)

    def close(self) -> None:
        """Stop the local engine and remove its shared memory."""
        self.engine.close()


_ACTOR_CLASS: Any = None


def _shard_actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = _ray().remote(_Shard)
    return _ACTOR_CLASS


@dataclasses.dataclass(frozen=True)
class ShardTick:
    """One shard's part of the last tick: ``status`` is ``ok``, ``late`` (dropped at the
    deadline), ``busy`` (not sent: a dropped call still runs), ``failed`` (the actor died during
    the tick), ``restoring`` or ``dead``; ``hop_s`` is the call's round trip less the time the
    shard spent in it."""

    shard: int
    status: str
    wall_s: float | None
    hop_s: float | None


@dataclasses.dataclass(frozen=True)
class ShardEvent:
    """A shard's failure or recovery: ``kind`` is ``down``, ``restored`` or ``dead``."""

    tick: int
    shard: int
    kind: str
    detail: str = ""


class _CoordinatorState:
    """The arrays a tick recorder reads: last observations, held actions, stale flags."""

    def __init__(self, n: int, n_modalities: int, n_factors: int) -> None:
        self.obs = np.zeros((n, n_modalities), dtype=np.int64)
        self.actions = np.zeros((n, n_factors), dtype=np.int64)
        self.stale = np.zeros(n, dtype=np.uint8)


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
        self.config = config or InferenceConfig()
        if populations is None:
            populations = [Population("main", model, int(n_agents), self.config)]
        self.populations: list[Population] = list(populations)
        configs = check_populations(self.populations, self.config)
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
        self.events: list[ShardEvent] = []
        self.restarts = 0
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
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        shards = int(self.shards if self.shards is not None else max(1, len(nodes)))
        if shards < 1 or self.n_agents < shards:
            raise ConfigError(f"ClusterEngine: need 1 <= shards <= n_agents, got "
                              f"shards={shards}, n_agents={self.n_agents}")
        per_population = [population_bounds(int(p.n_agents), shards, self.chunk)
                          for p in self.populations]
        #: each shard's ``(lo, hi)`` slice of each population (local indices)
        self.slices = [[bounds[s] for bounds in per_population] for s in range(shards)]
        #: with one population, each shard's slice of it
        self.bounds = per_population[0] if self._single else None
        self.shards = shards
        strategy = "STRICT_SPREAD" if len(nodes) >= self.shards else "SPREAD"
        self.placement_strategy = strategy
        self._pg = placement_group([{"CPU": self.cpus_per_shard}] * self.shards,
                                   strategy=strategy)
        ready, _ = ray.wait([self._pg.ready()], timeout=START_TIMEOUT_S)
        if not ready:
            raise ClusterError(f"ClusterEngine: could not place {self.shards} shards of "
                               f"{self.cpus_per_shard} CPU ({strategy}) on {len(nodes)} nodes "
                               f"in {START_TIMEOUT_S:.0f} s")
        actor_class = _shard_actor_class()
        self._model_refs = [ray.put(p.model) for p in self.populations]
        options: dict[str, Any] = {"num_cpus": self.cpus_per_shard,
                                   "max_restarts": self.max_restarts, "max_task_retries": 0}
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        self._actors = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._pg, placement_group_bundle_index=s),
                **options).remote(self._model_refs, self._parts(s), self._engine_kwargs)
            for s in range(self.shards)]
        self.shard_info = ray.get([a.info.remote() for a in self._actors],
                                  timeout=START_TIMEOUT_S)
        #: per population: the last observations, held actions and stale flags
        self.states = [_CoordinatorState(int(p.n_agents), c.layout.n_modalities,
                                         c.layout.n_factors)
                       for p, c in zip(self.populations, self.checkers, strict=True)]
        self.state = self.states[0]
        self._actions_views = []
        for state in self.states:
            view = state.actions.view()
            view.setflags(write=False)
            self._actions_views.append(view)
        self.shard_status = ["ok"] * self.shards
        self._discard: list[int | None] = [None] * self.shards
        self._epoch = [0] * self.shards
        self._late: list[list[tuple[Any, int]]] = [[] for _ in range(self.shards)]
        self._restore: list[tuple[Any, int] | None] = [None] * self.shards
        self._restore_failures = [0] * self.shards
        self._hop = [0.002] * self.shards
        self._checkpoints: list[tuple[Any, int] | None] = [None] * self.shards
        self._pending_checkpoints: list[tuple[Any, int, int] | None] = [None] * self.shards
        self._resync_due = False
        self._resync_refs: dict[int, Any] = {}
        self._drain: list[Any] = []            # calls of a lost shard: read, then dropped
        self.metrics = TickMetrics(self.n_agents)
        self.metrics.watch([os.getpid()])

    def close(self) -> None:
        """Stop every shard (each removes its shared memory), remove the placement group,
        and disconnect if this engine connected."""
        if not self._started:
            return
        ray = _ray()
        try:
            if self._actors and ray.is_initialized():
                closing = [a.close.remote() for a in self._actors]
                try:
                    ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
                finally:
                    for actor in self._actors:
                        ray.kill(actor, no_restart=True)
            if self._pg is not None and ray.is_initialized():
                from ray.util.placement_group import remove_placement_group
                remove_placement_group(self._pg)
        finally:
            self._actors = []
            self._pg = None
            self._started = False
            for name in ("_checkpoints", "_pending_checkpoints", "_late", "_restore",
                         "_resync_refs", "_drain", "_model_refs"):
                self.__dict__.pop(name, None)
            sweep_stale()                  # a shard killed on this node leaves its segments
            if self._owns_connection and ray.is_initialized():
                ray.shutdown()
            self._owns_connection = False
            self._restore_signal_handlers()

    def _parts(self, s: int) -> list[_ShardPart]:
        return [_ShardPart(p.name, lo, hi, first, p.config, p.backend)
                for p, (lo, hi), first in zip(self.populations, self.slices[s], self.first_ids,
                                              strict=True)]

    def _mark_stale(self, s: int) -> None:
        for state, (lo, hi) in zip(self.states, self.slices[s], strict=True):
            state.stale[lo:hi] = 1

    def __enter__(self) -> ClusterEngine:
        return self.start()

    # ------------------------------------------------------------------------- failures
    def _is_failure(self, exc: BaseException) -> bool:
        """Whether ``exc`` from a shard call means the shard was lost (not a bug to raise)."""
        ray = _ray()
        errors = ray.exceptions
        lost = (errors.RayActorError, errors.ObjectLostError)
        if isinstance(exc, lost):
            return True
        return isinstance(exc, errors.RayTaskError) and isinstance(
            getattr(exc, "cause", None), ShardNotRestored)

    def _on_failure(self, s: int, epoch: int, exc: BaseException) -> None:
        """Shard ``s`` lost (a call of ``epoch`` failed): restore it from its checkpoint."""
        if epoch != self._epoch[s] or self.shard_status[s] != "ok":
            return
        self._epoch[s] += 1
        self.restarts += 1
        self.shard_status[s] = "restoring"
        self._drain.extend(ref for ref, _ in self._late[s])
        self._late[s] = []
        self._discard[s] = None
        self._pending_checkpoints[s] = None
        self.events.append(ShardEvent(self.tick, s, "down", type(exc).__name__))
        self._submit_restore(s)

    def _submit_restore(self, s: int) -> None:
        checkpoint = self._checkpoints[s]
        arrays_ref, tick = (None, 0) if checkpoint is None else checkpoint
        last = [np.array(state.actions[lo:hi])
                for state, (lo, hi) in zip(self.states, self.slices[s], strict=True)]
        # the checkpoint is the state before tick ``tick``; the agents resume at self.tick
        ref = self._actors[s].restore.remote(arrays_ref, tick, last)
        self._restore[s] = (ref, self._epoch[s])

    def _poll(self) -> None:
        """Between ticks: check late calls for failures, finish restores, keep checkpoints."""
        ray = _ray()
        if self._drain:
            ready, self._drain = ray.wait(self._drain, num_returns=len(self._drain), timeout=0)
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception:  # noqa: BLE001, S110 - the failure was handled already
                    pass
        for s in range(self.shards):
            if self._late[s]:
                refs = [ref for ref, _ in self._late[s]]
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                done = set(ready)
                finished = [item for item in self._late[s] if item[0] in done]
                self._late[s] = [item for item in self._late[s] if item[0] not in done]
                for ref, epoch in finished:     # the results are dropped; only failures count
                    try:
                        ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - classified below
                        if not self._is_failure(exc):
                            raise
                        self._on_failure(s, epoch, exc)
            pending = self._pending_checkpoints[s]
            if pending is not None:
                ref, tick, epoch = pending
                ready, _ = ray.wait([ref], timeout=0)
                if ready:
                    self._pending_checkpoints[s] = None
                    try:
                        arrays = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - the step call reports it
                        if not self._is_failure(exc):
                            raise
                    else:
                        if epoch == self._epoch[s] and arrays is not None:
                            # fetched to this node and put back: survives the shard's node
                            self._checkpoints[s] = (ray.put(arrays), tick)
            restore = self._restore[s]
            if self.shard_status[s] == "restoring" and restore is not None:
                ref, epoch = restore
                ready, _ = ray.wait([ref], timeout=0)
                if not ready:
                    continue
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if not self._is_failure(exc):
                        raise
                    self._restore_failures[s] += 1
                    if self._restore_failures[s] >= MAX_RESTORE_FAILURES:
                        self.shard_status[s] = "dead"
                        self._restore[s] = None
                        self.events.append(ShardEvent(self.tick, s, "dead",
                                                      type(exc).__name__))
                    else:
                        self._submit_restore(s)
                    continue
                self._restore_failures[s] = 0
                self._restore[s] = None
                self.shard_status[s] = "ok"
                self._resync_due = True
                self.events.append(ShardEvent(self.tick, s, "restored"))

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
        split = self.split_observations(obs)
        parts = [np.asarray(part) for part in split]
        if level is None:
            level = self.controller.level if (self.controller and budget_s is not None) else 0
        if not FULL <= level <= MAX_LEVEL:
            raise ConfigError(f"ClusterEngine.step: level must be in 0..{MAX_LEVEL}, "
                              f"got {level}")
        started = time.monotonic()
        deadline = None if budget_s is None else started + float(budget_s)
        self._poll()
        tick = self.tick
        checkpoint = (self.checkpoint_every > 0 and tick > 0
                      and tick % self.checkpoint_every == 0)
        resync = self._resync_due
        self._resync_due = False
        sent: dict[Any, int] = {}
        send_time: dict[int, float] = {}
        for s, actor in enumerate(self._actors):
            if self.shard_status[s] != "ok" or self._late[s]:
                continue                       # down, or still busy with a dropped tick
            shard_budget = None
            if deadline is not None:
                shard_budget = max(0.0, deadline - time.monotonic() - self._hop[s])
            rows = [part[lo:hi]                # each shard is sent its own rows only
                    for part, (lo, hi) in zip(parts, self.slices[s], strict=True)]
            result_ref, state_ref = actor.step.options(num_returns=2).remote(
                rows, tick, shard_budget, level, self._discard[s], checkpoint or resync)
            self._discard[s] = None
            sent[result_ref] = s
            send_time[s] = time.monotonic()
            if checkpoint:
                self._pending_checkpoints[s] = (state_ref, tick, self._epoch[s])
            if resync:
                self._resync_refs[s] = state_ref
        until = (started + NO_BUDGET_TIMEOUT_S if deadline is None
                 else deadline + self.grace_s)
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
        status = {s: self.shard_status[s] for s in range(self.shards)}
        walls: dict[int, float] = {}
        hops: dict[int, float] = {}
        for s in range(self.shards):
            if s in arrived:
                ref, now = arrived[s]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if not self._is_failure(exc):
                        raise
                    self._on_failure(s, self._epoch[s], exc)
                    status[s] = "failed"
                    self._mark_stale(s)
                    continue
                for p, (state, (lo, hi)) in enumerate(zip(self.states, self.slices[s],
                                                          strict=True)):
                    state.actions[lo:hi] = result["actions"][p]
                    state.stale[lo:hi] = result["stale"][p]
                walls[s] = float(result["wall_s"])
                hop = max(0.0, now - send_time[s] - float(result["service_s"]))
                hops[s] = hop
                self._hop[s] = hop if self.tick == 0 else 0.8 * self._hop[s] + 0.2 * hop
                status[s] = "ok"
            else:
                self._mark_stale(s)
                if status[s] == "ok" and s not in send_time:
                    status[s] = "busy"         # not sent: its last call is still running
                elif status[s] == "ok":        # sent, no answer by the deadline
                    status[s] = "late"
                    ref = next(r for r, shard in sent.items() if shard == s)
                    self._late[s].append((ref, self._epoch[s]))
                    self._discard[s] = tick
        for state, part in zip(self.states, parts, strict=True):
            state.obs[...] = part
        wall = time.monotonic() - started
        if self.controller is not None and budget_s is not None:
            self.controller.observe(wall / max(budget_s, 1e-9))
        n_stale = sum(int(state.stale.sum()) for state in self.states)
        self.last_shards = [ShardTick(s, status[s], walls.get(s), hops.get(s))
                            for s in range(self.shards)]
        if resync:
            self.resync_tick = tick - 1
        self.last_tick = TickInfo(tick=tick, wall_s=wall, deadline_s=budget_s,
                                  stale_agents=n_stale, level=level)
        self.metrics.record(wall, budget_s, level, n_stale,
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
    def stale(self) -> np.ndarray:
        """1 for agents the last tick did not reach (they kept their previous action);
        all populations' flags concatenated in population order (a copy) when several."""
        if self._single:
            return self.state.stale
        return np.concatenate([state.stale for state in self.states])

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

    def _gather(self, refs: list[Any], what: str) -> list[Any]:
        ray = _ray()
        try:
            return ray.get(refs, timeout=NO_BUDGET_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - reported with what failed
            raise ClusterError(f"ClusterEngine.{what}: a shard did not answer "
                               f"({type(exc).__name__}: {exc})") from exc

    def _require_all_shards(self, what: str) -> None:
        dead = [s for s in range(self.shards) if self.shard_status[s] == "dead"]
        if dead:
            raise ClusterError(f"ClusterEngine.{what}: shards {dead} are dead")

    def agent_state(self, population: str | int | None = None) -> dict[str, np.ndarray]:
        """Every agent's state between ticks (of ``population`` when there are several),
        gathered from the shards in agent order (waits for a restoring shard)."""
        index = self._population_index(population, "agent_state")
        self._require_all_shards("agent_state")
        refs = []
        for s, actor in enumerate(self._actors):
            refs.append(actor.agent_state.remote(self._discard[s]))
            self._discard[s] = None
        parts = self._gather(refs, "agent_state")
        return {name: np.concatenate([p[index][name] for p in parts])
                for name in Engine.STATE_ARRAYS}

    def load_agent_state(self, arrays: Mapping[str, np.ndarray], tick: int,
                         population: str | int | None = None) -> None:
        """Restore :meth:`agent_state` output (of ``population`` when there are several) on
        every shard; the next step is tick ``tick``. Each shard's whole state afterwards
        becomes its checkpoint."""
        index = self._population_index(population, "load_agent_state")
        self._require_all_shards("load_agent_state")
        n = int(self.populations[index].n_agents)
        for name in Engine.STATE_ARRAYS:
            if name not in arrays:
                raise ConfigError(f"load_agent_state: missing array {name!r}")
            if len(np.asarray(arrays[name])) != n:
                raise ConfigError(f"load_agent_state: {name} must have {n} rows, got "
                                  f"{len(np.asarray(arrays[name]))}")
        ray = _ray()
        refs = []
        for s in range(self.shards):
            lo, hi = self.slices[s][index]
            loads: list[dict[str, np.ndarray] | None] = [None] * len(self.populations)
            loads[index] = {name: np.asarray(arrays[name])[lo:hi]
                            for name in Engine.STATE_ARRAYS}
            refs.append(self._actors[s].load_agent_state.remote(loads, int(tick),
                                                                self._discard[s]))
            self._discard[s] = None
        for s, whole in enumerate(self._gather(refs, "load_agent_state")):
            self._checkpoints[s] = (ray.put(whole), int(tick))
        state = self.states[index]
        state.actions[...] = arrays["actions"]
        state.stale[:] = 0
        self.tick = int(tick)

    def reset(self, agents: np.ndarray | None = None, population: str | int = 0) -> None:
        """Start a new episode for ``agents`` (indices within the population; default all)
        of a population (name or position)."""
        index = self._population_index(population, "reset")
        idx = select_agents(agents, int(self.populations[index].n_agents))
        refs = []
        for s in range(self.shards):
            lo, hi = self.slices[s][index]
            local = idx[(idx >= lo) & (idx < hi)] - lo
            if local.size and self.shard_status[s] == "ok":
                refs.append(self._actors[s].reset.remote(index, local, self._discard[s]))
                self._discard[s] = None
        self._gather(refs, "reset")
        self.states[index].actions[idx] = 0

    def resync_snapshot(self) -> dict[str, np.ndarray] | None:
        """After a shard was restored: every agent's state before the tick it resumed at
        (tick :attr:`resync_tick` + 1), or None if a shard could not give it (one population:
        what the tick log records)."""
        refs = self._resync_refs
        self._resync_refs = {}
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
        return self._gather([a.info.remote() for a in self._actors], "shard_infos")


class ClusterRecorder(TickRecorder):
    """A :class:`~engine.recording.TickRecorder` for a :class:`ClusterEngine`: the same log,
    plus per-tick shard timings and a belief snapshot where a restored shard resumed."""

    def __init__(self, engine: ClusterEngine, path: str, *, hz: float | None = None,
                 world: Mapping[str, Any] | None = None,
                 snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 extra: Mapping[str, Any] | None = None) -> None:
        extra = {"cluster": {"shards": engine.shards, "bounds": getattr(engine, "bounds", None),
                             "workers_per_shard": engine.workers}, **dict(extra or {})}
        super().__init__(engine, path, hz=hz, world=world,  # type: ignore[arg-type]
                         snapshot_every=snapshot_every, extra=extra)
        self._last_snapshot = -1

    def record(self, info: TickInfo | None = None) -> None:
        """Log the cluster engine's last tick (``info`` defaults to ``engine.last_tick``)."""
        engine: ClusterEngine = self.engine  # type: ignore[assignment]
        info = info or engine.last_tick
        if info is None:
            raise ConfigError("ClusterRecorder.record: the engine has not ticked yet")
        names = list(Engine.STATE_ARRAYS)
        meta = {"names": names, "codec": engine.beliefs}
        if engine.resync_tick is not None and engine.resync_tick == info.tick - 1:
            engine.resync_tick = None
            arrays = engine.resync_snapshot()
            if arrays is not None and info.tick - 1 > self._last_snapshot:
                self.writer.write_beliefs(info.tick - 1, [arrays[n] for n in names],
                                          {**meta, "reason": "shard restored"})
                self._last_snapshot = info.tick - 1
        state = engine.state
        shards = engine.last_shards
        timings = {"wall_s": info.wall_s,
                   "shards_late": float(sum(t.status == "late" for t in shards)),
                   "shards_down": float(sum(t.status in ("failed", "restoring", "dead")
                                            for t in shards))}
        hops = [t.hop_s for t in shards if t.hop_s is not None]
        if hops:
            timings["hop_s"] = float(max(hops))
        if info.deadline_s is not None:
            timings["budget_s"] = info.deadline_s
        self.writer.write_tick(info.tick, state.obs, state.actions, duration_s=info.wall_s,
                               level=info.level, stale_agents=np.flatnonzero(state.stale),
                               timings=timings)
        if self.writer.snapshot_due(info.tick) and info.tick > self._last_snapshot:
            arrays = engine.agent_state()
            self.writer.write_beliefs(info.tick, [arrays[n] for n in names], meta)
            self._last_snapshot = info.tick
