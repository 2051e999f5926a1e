"""The degradation ladder and its controller.

When ticks overrun their budget the engine trades quality for time, one rung at a time, and
climbs back with hysteresis when load drops:

====  =========================  ===============================================================
0     full                       every agent, every iteration, the whole policy horizon
1     fewer iterations           half the fixed-point iterations (multi-factor models)
2     shorter horizon            policies valued by their first step only
3     rotating fraction          half the agents (alternate chunks, rotating each tick)
4     stale actions              no agent updated: every agent keeps its last action
====  =========================  ===============================================================

The controller is a pure function of the utilisations it is shown, so a replay that feeds it
the recorded levels (or the same utilisations) reproduces the run.
"""

from __future__ import annotations

import dataclasses

FULL, FEWER_ITERATIONS, SHORTER_HORIZON, ROTATING_FRACTION, STALE_ACTIONS = range(5)
LEVEL_NAMES = ("full", "fewer iterations", "shorter horizon", "rotating fraction",
               "stale actions")
MAX_LEVEL = STALE_ACTIONS


@dataclasses.dataclass
class DegradeController:
    """Moves down a rung when a tick misses its budget (or runs hot), up after calm ticks.

    Args:
        high: utilisation (tick time / budget) above which a tick counts as hot.
        low: utilisation below which a tick counts as calm.
        hot_ticks: consecutive hot ticks that move one rung down (a missed budget, i.e.
            utilisation > 1, moves down at once).
        calm_ticks: consecutive calm ticks that move one rung up.
        settle_ticks: after climbing a rung, this many ticks count a missed budget as hot
            rather than moving down at once. The first ticks after a climb pay for agents that
            were not updated below (their beliefs lag the world, so inference and the policy
            search see broad supports): without this a population near capacity that was
            pushed down to stale actions once kept climbing to the rotating fraction, missing
            that first tick and falling back, for good (seen in a soak at 100,000 agents).
        max_level: the lowest rung the controller may use.
    """

    high: float = 0.9
    low: float = 0.5
    hot_ticks: int = 2
    calm_ticks: int = 5
    settle_ticks: int = 3
    max_level: int = MAX_LEVEL
    level: int = FULL
    _hot: int = 0
    _calm: int = 0
    _settling: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.low < self.high:
            raise ValueError(f"degrade: need 0 < low < high, got low={self.low}, "
                             f"high={self.high}")
        if not 0 <= self.max_level <= MAX_LEVEL:
            raise ValueError(f"degrade: max_level must be in 0..{MAX_LEVEL}")

    def observe(self, utilisation: float) -> int:
        """Record one tick's utilisation; return the level for the next tick."""
        settling = self._settling > 0
        self._settling = max(0, self._settling - 1)
        if utilisation > 1.0 and not settling:
            self._down()
        elif utilisation > self.high:
            self._calm = 0
            self._hot += 1
            if self._hot >= self.hot_ticks:
                self._down()
        elif utilisation < self.low:
            self._hot = 0
            self._calm += 1
            if self._calm >= self.calm_ticks and self.level > FULL:
                self.level -= 1
                self._calm = 0
                self._settling = self.settle_ticks
        else:
            self._hot = self._calm = 0
        return self.level

    def _down(self) -> None:
        self.level = min(self.max_level, self.level + 1)
        self._hot = self._calm = self._settling = 0
