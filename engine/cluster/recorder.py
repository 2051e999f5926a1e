"""The tick log of a cluster run, written by the coordinator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from engine.cluster.coordinator import ClusterEngine
from engine.errors import ConfigError
from engine.runtime.engine import Engine
from engine.runtime.tick import TickInfo
from engine.ticklog.recorder import DEFAULT_SNAPSHOT_EVERY, DEFAULT_VISUAL_EVERY, TickRecorder


class ClusterRecorder(TickRecorder):
    """A :class:`~engine.recording.TickRecorder` for a :class:`ClusterEngine`: the same log,
    plus per-tick shard timings and a belief snapshot where a restored shard resumed."""

    def __init__(self, engine: ClusterEngine, path: str, *, hz: float | None = None,
                 world: Mapping[str, Any] | None = None,
                 snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 extra: Mapping[str, Any] | None = None, overwrite: bool = False,
                 max_bytes: int | None = None, rotate: int | None = None,
                 visual: Any = None, visual_every: int = DEFAULT_VISUAL_EVERY) -> None:
        extra = {"cluster": {"shards": engine.shards, "bounds": getattr(engine, "bounds", None),
                             "workers_per_shard": engine.workers}, **dict(extra or {})}
        super().__init__(engine, path, hz=hz, world=world,  # type: ignore[arg-type]
                         snapshot_every=snapshot_every, extra=extra, overwrite=overwrite,
                         max_bytes=max_bytes, rotate=rotate, visual=visual,
                         visual_every=visual_every)
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
                               timings=timings, stale_reasons=info.stale_reasons,
                               visual=self.visual_frame(info.tick))
        if self.writer.snapshot_due(info.tick) and info.tick > self._last_snapshot:
            arrays = engine.agent_state()
            self.writer.write_beliefs(info.tick, [arrays[n] for n in names], meta)
            self._last_snapshot = info.tick
        if self.rotate_if_due():
            self._last_snapshot = info.tick
