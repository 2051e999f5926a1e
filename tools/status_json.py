"""``agentloop run --status-json PATH``: the status line's figures as one JSON object a second,
for dashboards and scripts that watch a long run."""

from __future__ import annotations

import dataclasses
import time
from typing import IO, Any

import orjson

from engine.runtime.engine_base import EngineBase


class StatusJson:
    """Appends one JSON line to ``path`` at most every ``every_s`` seconds (the caller writes
    a last one at the run's end with :meth:`write`): wall time, tick, the metrics snapshot
    (p50/p99 of the engine step in ms, missed ticks, level, stale agents, in all and by
    reason for the last tick and summed over ticks, agent-steps/s, RSS) and the world's
    counts."""

    def __init__(self, path: str, engine: EngineBase, every_s: float = 1.0) -> None:
        self.engine = engine
        self.every_s = every_s
        self._next = 0.0
        self._last_tick = -1
        self._fh: IO[bytes] = open(path, "wb")  # noqa: SIM115  (closed by close())

    def __call__(self, world_counts: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self.write(world_counts)

    def write(self, world_counts: dict[str, Any] | None = None) -> None:
        """Write the current figures now (once per tick at most)."""
        tick = int(self.engine.tick)
        if tick == self._last_tick:
            return
        self._last_tick = tick
        record = {"time": time.time(), "tick": tick,
                  **dataclasses.asdict(self.engine.metrics.snapshot())}
        if world_counts:
            record["world"] = world_counts
        self._fh.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
