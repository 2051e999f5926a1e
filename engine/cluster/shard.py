"""The Ray actor of one shard: a local ``Engine`` for the shard's slice of every population,
which undoes a tick the coordinator dropped and is restored from a checkpoint after a restart.

The actor is built in two calls: its constructor takes no object references (Ray cannot keep
a restartable actor's constructor arguments alive in its object store, and says so with an
ERROR line), and :meth:`_Shard.start` or :meth:`_Shard.restore` gets the models' references
from the coordinator, which holds them for the engine's life."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.cluster.ray_connection import _ray
from engine.cluster.sharding import ShardPart
from engine.errors import ShardNotRestored
from engine.model.generative_model import GenerativeModel
from engine.runtime.engine import Engine
from engine.runtime.population import Population


class _Shard:
    """The Ray actor of one shard: an ``Engine`` for a slice of every population (global ids
    kept)."""

    def __init__(self, parts: list[ShardPart], engine_kwargs: dict[str, Any]) -> None:
        import ray
        self.parts = list(parts)
        self._engine_kwargs = dict(engine_kwargs)
        self.engine: Engine | None = None
        with warnings.catch_warnings():    # Ray's own property uses a deprecated accessor
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.ready = False
        self._states: list[Any] = []
        self._undo: list[dict[str, np.ndarray]] = []
        self._undo_tick: int | None = None
        self.delay_s = 0.0                  # test hook: sleep before the next step

    def start(self, model_refs: list[Any]) -> dict[str, Any]:
        """Build the shard's engine from the models (``model_refs``: ObjectRefs in a list);
        returns :meth:`info`. A restarted actor waits for :meth:`restore` instead."""
        self._build(model_refs)
        self.ready = not self.restarted
        return self.info()

    def _build(self, model_refs: list[Any]) -> Engine:
        if self.engine is not None:
            return self.engine
        import ray
        models: list[GenerativeModel] = ray.get(list(model_refs))
        parts = self.parts
        populations = [Population(part.name, model, part.hi - part.lo, part.config,
                                  part.backend) for part, model in zip(parts, models, strict=True)]
        engine = Engine(populations=populations, degrade=False,
                        id_offset=[part.first_id + part.lo for part in parts],
                        **self._engine_kwargs)
        engine.start()
        # the actor's signals belong to Ray (it stops workers with SIGTERM)
        engine._restore_signal_handlers()
        self._states = [engine.population(i).state for i in range(len(parts))]
        self._undo = [{name: np.empty_like(getattr(state, name)) for name in Engine.STATE_ARRAYS}
                      for state in self._states]
        self.engine = engine
        return engine

    def _engine(self) -> Engine:
        """The shard's engine; ShardNotRestored in a restarted actor not yet restored."""
        if self.engine is None:
            raise ShardNotRestored(f"shard {self._name()} was restarted and not restored")
        return self.engine

    def info(self) -> dict[str, Any]:
        """Where this shard runs: pid, node, shared-memory run id, whether it was restarted,
        and its slice of each population (``lo``/``hi``: of the first)."""
        import ray
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "run_id": None if self.engine is None else self.engine.run_id,
                "lo": self.parts[0].lo, "hi": self.parts[0].hi,
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
        engine = self._engine()
        return [engine.agent_state(i) for i in range(len(self.parts))]

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
        engine = self._engine()
        engine.tick = int(tick)
        engine.step(list(obs), budget_s=budget_s, level=level)
        wall = engine.last_tick.wall_s if engine.last_tick else 0.0
        result = {"tick": int(tick),
                  "actions": [np.array(state.actions) for state in self._states],
                  "stale": [np.array(state.stale) for state in self._states],
                  "stale_reasons": _reasons(engine),
                  "wall_s": wall, "service_s": time.monotonic() - received}
        return result, snapshot

    def _name(self) -> str:
        return ", ".join(f"{part.name} {part.lo}..{part.hi}" for part in self.parts)

    def restore(self, model_refs: list[Any], arrays: list[Mapping[str, np.ndarray]] | None,
                tick: int, last_actions: list[np.ndarray]) -> dict[str, Any]:
        """Load a checkpoint (``None``: keep the initial state) so that the next tick is
        ``tick``, with ``last_actions`` (what the world last executed) as previous actions;
        a restarted actor first builds its engine from ``model_refs`` (as :meth:`start`)."""
        engine = self._build(model_refs)
        for i, state in enumerate(self._states):
            if arrays is not None:
                engine.load_agent_state(arrays[i], tick, population=i)
            state.actions[...] = last_actions[i]
            state.prev_action[...] = last_actions[i]
            state.stale[:] = 1
        engine.tick = int(tick)
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
        engine = self._engine()
        for i, part in enumerate(arrays):
            if part is not None:
                engine.load_agent_state(part, tick, population=i)
        engine.tick = int(tick)
        self._undo_tick = None
        self.ready = True
        return self._state()

    def reset(self, population: int, agents: np.ndarray, keep_action: bool,
              discard: int | None) -> None:
        """A new episode for local agent indices ``agents`` of population ``population``."""
        self._discard(discard)
        self._engine().reset(agents, population=population, keep_action=keep_action)

    def set_delay(self, seconds: float) -> None:
        """Test hook: make the next step sleep ``seconds`` before stepping."""
        self.delay_s = float(seconds)

    def close(self) -> None:
        """Stop the local engine and remove its shared memory."""
        if self.engine is not None:
            self.engine.close()


_ACTOR_CLASS: Any = None


def shard_actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = _ray().remote(_Shard)
    return _ACTOR_CLASS


def _reasons(engine: Engine) -> dict[str, int]:
    """The shard engine's last tick's stale agents by reason."""
    info = engine.last_tick
    return {} if info is None or info.stale_reasons is None else info.stale_reasons.as_dict()
