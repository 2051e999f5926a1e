"""What one tick and one fixed-rate run report: :class:`TickInfo` and :class:`RunSummary`."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TickInfo:
    """What happened in the last tick (for the status line and the tick log)."""

    tick: int
    wall_s: float
    deadline_s: float | None
    stale_agents: int
    level: int


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
