"""The engine contract that ``Engine`` and ``ClusterEngine`` share: lifetime, stepping,
observation routing between populations, the fixed-rate run, and per-population reads."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from engine.errors import ConfigError, ObservationError
from engine.runtime.agents import Agents
from engine.runtime.arguments import checked_rate
from engine.runtime.call_guard import CallGuard
from engine.runtime.contracts import WorldLike
from engine.runtime.degrade import DegradeController
from engine.runtime.fixed_rate import run_fixed_rate
from engine.runtime.metrics import TickMetrics
from engine.runtime.population import Population
from engine.runtime.signals import StopOnSignal
from engine.runtime.tick import RunSummary, TickInfo

_Engine = TypeVar("_Engine", bound="EngineBase")


class EngineBase(StopOnSignal, abc.ABC):
    """Populations of agents stepped tick by tick; use as a context manager, or call
    :meth:`start` and :meth:`close`."""

    populations: list[Population]
    #: one in-process ``Agents`` per population: validates its model and config, holds its
    #: layout and policies, and checks each tick's observations
    checkers: list[Agents]
    seed: int
    tick: int
    last_tick: TickInfo | None
    controller: DegradeController | None
    metrics: TickMetrics
    #: each population's per-agent arrays (``stale`` among them), and the first population's
    state: Any
    states: list[Any]
    _in_run: bool = False
    #: the per-agent arrays that make up an agent's state between ticks
    STATE_ARRAYS = ("qs", "prev_action", "started", "actions")

    @abc.abstractmethod
    def start(self) -> EngineBase:
        """Acquire what the engine runs on (shared memory, workers, shard actors)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything :meth:`start` acquired; safe to call twice."""

    @abc.abstractmethod
    def step(self, obs: Any, budget_s: float | None = None, level: int | None = None) -> Any:
        """Advance every agent one tick: observations in, actions out."""

    @abc.abstractmethod
    def reset(self, agents: np.ndarray | None = None, population: str | int = 0,
              keep_action: bool = True) -> None:
        """Start a new episode for ``agents`` of a population (``keep_action``: pymdp's
        ``Agent.reset()``, the next prior is ``B[last action] @ uniform``; else D)."""

    @abc.abstractmethod
    def agent_state(self, population: str | int | None = None) -> dict[str, np.ndarray]:
        """Copies of every agent's state between ticks."""

    @abc.abstractmethod
    def load_agent_state(self, arrays: Mapping[str, np.ndarray], tick: int,
                         population: str | int | None = None) -> None:
        """Restore :meth:`agent_state` output; the next step is tick ``tick``."""

    def __enter__(self: _Engine) -> _Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _guard(self) -> CallGuard:
        """Keeps a second thread out of the engine while one is inside (created on first use;
        ``dict.setdefault`` makes two first uses agree)."""
        guard = self.__dict__.get("_call_guard")
        if guard is None:
            guard = self.__dict__.setdefault("_call_guard", CallGuard())
        return guard

    @property
    def _single(self) -> bool:
        return len(self.populations) == 1

    @property
    def resets_before_last_tick(self) -> list[tuple[int, np.ndarray, bool]]:
        """The resets made between the previous tick and the last one, in order: (population
        index, agent indices, keep_action). A tick log records them so that replay repeats
        them."""
        return self.__dict__.get("_resets_taken", [])

    def _note_reset(self, population: int, agents: np.ndarray, keep_action: bool) -> None:
        """Remember a reset for the next tick's :attr:`resets_before_last_tick`."""
        self.__dict__.setdefault("_resets_pending", []).append(
            (int(population), np.array(agents, dtype=np.int64), bool(keep_action)))

    def _take_resets(self) -> None:
        """A tick starts: the resets made since the previous one become its own."""
        self.__dict__["_resets_taken"] = self.__dict__.pop("_resets_pending", [])

    @property
    def stale(self) -> np.ndarray:
        """1 for agents the last tick did not reach (they kept their previous action);
        all populations' flags concatenated in population order (a copy) when several."""
        if self._single:
            return self.state.stale
        return np.concatenate([state.stale for state in self.states])

    def split_observations(self, obs: Any) -> list[np.ndarray]:
        """One checked observation array per population, in order (nothing written yet):
        ``obs`` is an array (one population), a list in population order or a dict by name."""
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
        for pop, checker, part in zip(self.populations, self.checkers, parts, strict=True):
            try:
                checker.check_observations(part, int(pop.n_agents))
            except ObservationError as exc:
                if self._single:
                    raise
                raise ObservationError(f"population {pop.name!r}: {exc}") from None
        return parts

    def warm_up(self, obs: Any, ticks: int = 2) -> float:
        """Run the cold paths (compiled code's first calls, caches, page faults, the
        first-step memo) before the simulator's clock starts, so the first real tick holds its
        budget; returns the seconds it took.

        Steps ``ticks`` times on ``obs`` (what :meth:`step` takes), then puts every agent's
        state, the tick counter and the metrics back as they were: results, tick logs and
        replay are the same as without it. Resets made before it still belong to the next
        tick.
        """
        where = f"{type(self).__name__}.warm_up"
        if not isinstance(ticks, int) or isinstance(ticks, bool) or ticks < 1:
            raise ConfigError(f"{where}: ticks must be an int >= 1, got {ticks!r}")
        tick, last = self.tick, self.last_tick
        saved = [self.agent_state(i) for i in range(len(self.populations))]
        pending = self.__dict__.pop("_resets_pending", None)
        started = time.monotonic()
        try:
            for _ in range(ticks):
                self.step(obs)
        finally:
            for i, arrays in enumerate(saved):
                self.load_agent_state(arrays, tick, i)
            self.last_tick = last
            self.metrics.clear()
            if pending:
                self.__dict__["_resets_pending"] = pending
        return time.monotonic() - started

    def run(self, world: WorldLike, hz: float, ticks: int,
            on_tick: Callable[[TickInfo], None] | None = None,
            raise_on_signal: bool = True) -> RunSummary:
        """Drive ``world`` at a fixed rate for ``ticks`` ticks (:func:`run_fixed_rate`).

        SIGINT or SIGTERM ends the run after the current tick, closes the engine and then
        raises ``KeyboardInterrupt`` / ``SystemExit``; with ``raise_on_signal=False`` it
        returns the summary (``interrupted=True``, :attr:`stop_requested` holds the signal)
        and leaves closing to the caller.
        """
        where = f"{type(self).__name__}.run"
        hz, ticks = checked_rate(hz, ticks, on_tick, where)
        with self._guard.call(where):
            obs = world.reset(self.seed)
            self._in_run = True
            try:
                summary = run_fixed_rate(self, world, hz, ticks, on_tick, obs, self.metrics)
            finally:
                self._in_run = False
        if raise_on_signal:
            self._honour_stop()
        return summary
