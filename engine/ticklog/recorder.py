"""Recording an engine's ticks into a tick log (``engine.ticklog``), for replay and audit.

The reasoning behind it is in docs/architecture.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.errors import ConfigError
from engine.runtime.engine_base import EngineBase
from engine.runtime.tick import RunSummary, TickInfo
from engine.ticklog.schema import TickLogHeader
from engine.ticklog.visual import TOPIC_GRID, TOPIC_WORLD_STATS, VisualFrame, frame_of
from engine.ticklog.writer import TickLogWriter, rotation_problem

#: ticks between belief snapshots unless told otherwise
DEFAULT_SNAPSHOT_EVERY = 100
#: ticks between visual frames unless told otherwise (every tick: docs/ticklog.md, sizes)
DEFAULT_VISUAL_EVERY = 1


class TickRecorder:
    """Writes one engine's ticks to the tick log at ``path`` (one population); an existing
    ``path`` is refused unless ``overwrite`` (:class:`~engine.ticklog.writer.TickLogWriter`).

    ``max_bytes`` and ``rotate`` (``agentloop run --log-max-bytes`` and ``--log-rotate``) make
    the log a rotated set: a file ends once the next tick would take it past ``max_bytes``
    and the next starts with the agents' state after its last tick; at most ``rotate`` files
    are kept (None: all). See docs/ticklog.md.

    ``visual`` (a grid world: an object with ``grid_layers()``, and ``stats()`` if it has
    figures; ``agentloop run --visual``) adds, every ``visual_every`` ticks, its cells as a
    ``foxglove.Grid`` on ``/world/grid`` and its figures on ``/world/stats``, as they are when
    the tick is recorded, so that the log opens in Foxglove as a picture."""

    def __init__(self, engine: EngineBase, path: str, *, hz: float | None = None,
                 world: Mapping[str, Any] | None = None,
                 snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 extra: Mapping[str, Any] | None = None, overwrite: bool = False,
                 max_bytes: int | None = None, rotate: int | None = None,
                 visual: Any = None, visual_every: int = DEFAULT_VISUAL_EVERY) -> None:
        if len(engine.populations) != 1:
            raise ConfigError("TickRecorder: a tick log records an engine with one population")
        if snapshot_every < 0:
            raise ConfigError(f"TickRecorder: snapshot_every must be >= 0, got {snapshot_every}")
        problem = rotation_problem(max_bytes, rotate)
        if problem:
            raise ConfigError(f"TickRecorder: {problem}")
        if visual is not None and not callable(getattr(visual, "grid_layers", None)):
            raise ConfigError(f"TickRecorder: visual must be a grid world (an object with "
                              f"grid_layers()), got {type(visual).__name__}")
        if isinstance(visual_every, bool) or not isinstance(visual_every, int) \
                or visual_every < 1:
            raise ConfigError(f"TickRecorder: visual_every must be a whole number >= 1, got "
                              f"{visual_every!r}")
        self.engine = engine
        self.visual, self.visual_every = visual, visual_every
        shown = {} if visual is None else {"visual": {
            "every": visual_every, "topics": [TOPIC_GRID, TOPIC_WORLD_STATS]}}
        population = engine.populations[0]
        config = population.config or engine.config
        header = TickLogHeader(
            n_agents=engine.n_agents, hz=hz, seed=engine.seed, workers=engine.workers,
            model_hash=population.model.content_hash(),
            model_npz=population.model.to_npz_bytes(), config=config.to_dict(),
            world=dict(world or {}),
            extra={"beliefs": engine.beliefs, "chunk": engine.chunk,
                   "population": population.name, "state_arrays": list(EngineBase.STATE_ARRAYS),
                   "backend": self._backend(),
                   "xp_kernel": getattr(engine, "xp_kernel", "array"),
                   **shown, **dict(extra or {})})
        self.writer = TickLogWriter(path, header, snapshot_every=snapshot_every,
                                    overwrite=overwrite, max_bytes=max_bytes, rotate=rotate,
                                    visual=visual is not None)

    def _backend(self) -> str:
        """The population's backend now (``"numba"`` after a failover; a cluster's shards
        run Numba)."""
        return getattr(self.engine, "backends", ("numba",))[0]

    def __call__(self, info: TickInfo) -> None:
        self.record(info)

    def visual_frame(self, tick: int) -> VisualFrame | None:
        """The visual frame to log with ``tick`` (every ``visual_every`` ticks), or None."""
        if self.visual is None or tick % self.visual_every:
            return None
        return frame_of(self.visual)

    def record(self, info: TickInfo | None = None) -> None:
        """Log the engine's last tick (``info`` defaults to ``engine.last_tick``)."""
        info = info or self.engine.last_tick
        if info is None:
            raise ConfigError("TickRecorder.record: the engine has not ticked yet")
        state = self.engine.state
        timings = {"wall_s": info.wall_s}
        if info.deadline_s is not None:
            timings["budget_s"] = info.deadline_s
        failover = next((f.error for f in getattr(self.engine, "failovers", ())
                         if f.tick == info.tick), None)
        self.writer.write_tick(info.tick, state.obs, state.actions, duration_s=info.wall_s,
                               level=info.level, stale_agents=np.flatnonzero(state.stale),
                               timings=timings, failover=failover,
                               resets=[(agents, keep) for population, agents, keep
                                       in self.engine.resets_before_last_tick
                                       if population == 0], stale_reasons=info.stale_reasons,
                               visual=self.visual_frame(info.tick))
        if self.writer.snapshot_due(info.tick) or failover is not None:
            arrays = self.engine.agent_state()
            # a learning population's own parameter arrays follow the beliefs
            names = list(arrays)
            state = [arrays[n] for n in names]
            if failover is None and self.writer.rotation_due(state):
                self.writer.rotate(state, {**self._snapshot_meta(names), "reason": "rotation"})
                return                     # the next file opens with this snapshot
            self.writer.write_beliefs(info.tick, state, self._snapshot_meta(names))
        self.rotate_if_due()

    def _snapshot_meta(self, names: list[str]) -> dict[str, Any]:
        return {"names": names, "codec": self.engine.beliefs, "backend": self._backend()}

    def rotate_if_due(self) -> bool:
        """Go on in the set's next file (``max_bytes``) when the current one is full, starting
        it with the agents' state after the last tick recorded; whether it did."""
        if not self.writer.rotation_due():
            return False
        arrays = self.engine.agent_state()
        self.writer.rotate(list(arrays.values()),
                           {**self._snapshot_meta(list(arrays)), "reason": "rotation"})
        return True

    def close(self, summary: RunSummary | None = None, error: str | None = None) -> None:
        """Write the footer (the run's totals) and close the file."""
        totals: dict[str, Any] = {}
        if summary is not None:
            totals = {"ticks": summary.ticks, "hz": summary.hz, "missed": summary.missed,
                      "dropped_slots": summary.dropped_slots,
                      "late_slots": summary.late_slots,
                      "tick_s_p50": summary.tick_s_p50, "tick_s_p99": summary.tick_s_p99,
                      "level_counts": summary.level_counts,
                      "interrupted": summary.interrupted,
                      "stale_agent_ticks": summary.stale_agent_ticks.as_dict()}
        self.writer.close(totals, error=error)
