"""The degradation ladder and its controller. (reasoning: docs/architecture.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

FULL, FEWER_ITERATIONS, SHORTER_HORIZON, ROTATING_FRACTION, STALE_ACTIONS = range(5)
LEVEL_NAMES = ("full", "fewer iterations", "shorter horizon", "rotating fraction",
               "stale actions")
MAX_LEVEL = STALE_ACTIONS
#: the share of a tick's budget the rotating fraction may use (its deadline is moved forward)
ROTATING_BUDGET = 0.75


def noop_levels(populations: Sequence[tuple[int, int, int]]) -> tuple[int, ...]:
    """Rungs that would change nothing for populations given as ``(n_factors, num_iter,
    policy_len)``: fewer iterations when no population iterates (single-factor posteriors are
    exact, or num_iter is 1), a shorter horizon when every policy is one step long."""
    skipped = []
    if not any(factors > 1 and num_iter > 1 for factors, num_iter, _ in populations):
        skipped.append(FEWER_ITERATIONS)
    if not any(policy_len > 1 for _, _, policy_len in populations):
        skipped.append(SHORTER_HORIZON)
    return tuple(skipped)


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
        skip: rungs the controller never picks (``Engine`` passes :func:`noop_levels`).
    """

    high: float = 0.9
    low: float = 0.5
    hot_ticks: int = 2
    calm_ticks: int = 5
    settle_ticks: int = 3
    max_level: int = MAX_LEVEL
    skip: tuple[int, ...] = ()
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
        if FULL in self.skip or any(not FULL < lv <= MAX_LEVEL for lv in self.skip):
            raise ValueError(f"degrade: skip may hold levels 1..{MAX_LEVEL}, got {self.skip}")

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
                self.level = self._next(self.level, -1)
                self._calm = 0
                self._settling = self.settle_ticks
        else:
            self._hot = self._calm = 0
        return self.level

    def _down(self) -> None:
        if self.level < self.max_level:
            self.level = min(self.max_level, self._next(self.level, +1))
        self._hot = self._calm = self._settling = 0

    def _next(self, level: int, direction: int) -> int:
        """The next rung from ``level`` in ``direction`` that is not skipped (full and stale
        actions never are)."""
        level += direction
        while level in self.skip and FULL < level < MAX_LEVEL:
            level += direction
        return level


def controller_for(degrade: DegradeController | bool | None,
                   populations: Sequence[tuple[int, int, int]]) -> DegradeController | None:
    """The controller an engine uses for ``degrade`` (True: a default one; False or None: none),
    told to skip the rungs that change nothing for ``populations`` (see :func:`noop_levels`)."""
    controller = DegradeController() if degrade is True else (degrade or None)
    if controller is not None:
        controller.skip = tuple(sorted(set(controller.skip) | set(noop_levels(populations))))
    return controller
