"""What one tick and one fixed-rate run report: :class:`TickInfo` and :class:`RunSummary`."""

from __future__ import annotations

import dataclasses

from engine.runtime.stale import StaleCounts


@dataclasses.dataclass(frozen=True)
class TickInfo:
    """What happened in the last tick (for the status line and the tick log).

    ``stale_agents``: agents not updated in the tick, for any reason; ``stale_reasons``: the
    same agents by reason (:class:`~engine.runtime.stale.StaleCounts`; None where the engine
    does not know them, as a ``serve`` client)."""

    tick: int
    wall_s: float
    deadline_s: float | None
    stale_agents: int
    level: int
    stale_reasons: StaleCounts | None = None


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Totals of a fixed-rate run.

    ``missed``: ticks whose engine step took longer than the budget it was given (the same
    definition as the status line's, soak's and ``inspect``'s); ``late_slots``: slots that
    ended after their due time (engine plus world); ``dropped_slots``: whole periods skipped
    to catch up; ``tick_s_p50`` / ``tick_s_p99``: of the engine step, as everywhere else;
    ``stale_agent_ticks``: stale agents summed over the run's ticks, by reason.
    """

    ticks: int
    hz: float
    missed: int
    dropped_slots: int
    tick_s_p50: float
    tick_s_p99: float
    level_counts: list[int]
    interrupted: bool = False
    late_slots: int = 0
    stale_agent_ticks: StaleCounts = StaleCounts()
