"""The fixed-rate tick loop ("fix your timestep") that drives a world with any engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from engine.runtime.contracts import WorldLike
from engine.runtime.degrade import MAX_LEVEL
from engine.runtime.metrics import TickMetrics
from engine.runtime.stale import StaleCounts
from engine.runtime.tick import RunSummary, TickInfo


class TickedEngine(Protocol):
    """What the loop needs of an engine: a budgeted step, its last tick and a stop flag."""

    last_tick: TickInfo | None
    stop_requested: int | None

    def step(self, obs: np.ndarray, budget_s: float | None = None) -> np.ndarray: ...


def run_fixed_rate(engine: TickedEngine, world: WorldLike, hz: float, ticks: int,
                   on_tick: Callable[[TickInfo], None] | None, obs: np.ndarray,
                   metrics: TickMetrics | None = None) -> RunSummary:
    """Step ``engine`` and ``world`` in turn for ``ticks`` ticks, tick k due at start + k / hz.

    The engine's budget is what is left of the slot after the world's step (estimated from its
    recent steps). A late tick starts at once; a tick more than a whole period late drops the
    missed slots instead of trying to catch up, so the loop neither drifts nor spirals. A stop
    request (SIGINT/SIGTERM) ends the loop after the current tick. Late and dropped slots are
    also counted into ``metrics`` as they happen (for a live reader such as the Prometheus
    endpoint), after the tick's ``on_tick``.
    """
    period = 1.0 / hz
    due = time.monotonic()
    world_s = 0.0
    walls = np.zeros(ticks)
    levels = np.zeros(ticks, dtype=np.int64)
    missed = dropped = late = 0
    done = 0
    stale = StaleCounts()
    for k in range(ticks):
        if engine.stop_requested is not None:
            break
        slot_start = time.monotonic()
        budget = max(0.0, due + period - slot_start - world_s)
        actions = engine.step(obs, budget_s=budget)
        w0 = time.monotonic()
        obs = world.step(actions)
        world_s = 0.8 * world_s + 0.2 * (time.monotonic() - w0) if k else \
            time.monotonic() - w0
        info = engine.last_tick
        walls[k] = info.wall_s if info else w0 - slot_start
        levels[k] = info.level if info else 0
        if info is not None and info.wall_s > budget:
            missed += 1
        if info is not None and info.stale_reasons is not None:
            stale = stale + info.stale_reasons
        if on_tick is not None and engine.last_tick is not None:
            on_tick(engine.last_tick)
        done = k + 1
        due += period
        now = time.monotonic()
        if now < due and engine.stop_requested is None:
            time.sleep(due - now)
        else:
            late += 1
            skipped = int((now - due) // period) if now - due > period else 0
            dropped += skipped
            due += skipped * period
            if metrics is not None:
                metrics.record_slot(True, skipped)
    walls, levels = walls[:max(done, 1)], levels[:max(done, 1)]
    return RunSummary(ticks=done, hz=hz, missed=missed, dropped_slots=dropped,
                      tick_s_p50=float(np.median(walls)),
                      tick_s_p99=float(np.percentile(walls, 99)),
                      level_counts=np.bincount(levels, minlength=MAX_LEVEL + 1).tolist(),
                      interrupted=engine.stop_requested is not None, late_slots=late,
                      stale_agent_ticks=stale)
