"""The degradation ladder and its controller, which picks the kernel rung from measured
costs (reasoning: docs/architecture.md, section `engine/runtime/degrade.py`)."""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence

FULL, FEWER_ITERATIONS, SHORTER_HORIZON, ROTATING_FRACTION, STALE_ACTIONS = range(5)
LEVEL_NAMES = ("full", "fewer iterations", "shorter horizon", "rotating fraction",
               "stale actions")
MAX_LEVEL = STALE_ACTIONS
log = logging.getLogger("agentloop.degrade")

#: the share of a tick's budget the rotating fraction may use (its deadline is moved forward)
ROTATING_BUDGET = 0.75
#: with a deadline, the fewest agents one kernel call steps between two deadline checks (a
#: chunk is stepped in blocks sized from the pace, never shorter: under contention a whole
#: chunk overran the budget)
SUB_BLOCK = 128
#: the first cut ticks whose tails the margin ignores (cold: fresh shared memory faulted in,
#: the tick log's writer starting; their tails say nothing about the load)
COLD_TICKS = 10
#: the most of a tick's budget the margin may keep free: past it, a margin learnt from rare long
#: tails would leave the workers less time than the tails it guards against, and fewer agents
#: updated per tick raise the wall time per agent it is counted in (it fed on itself)
MARGIN_SHARE = 0.5


def block_size(chunk: int) -> int:
    """The agents stepped between two deadline checks for ``chunk``-agent chunks."""
    return max(1, min(chunk, SUB_BLOCK))


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


#: the rungs the controller picks by itself; the rotating fraction and stale actions remain
#: for forced levels (``Engine.step(level=...)``, replay of older logs)
AUTO_LEVELS = (FULL, FEWER_ITERATIONS, SHORTER_HORIZON)


@dataclasses.dataclass
class DegradeController:
    """Picks each tick's kernel rung from the measured cost of an agent-step and the budget.

    Under load the engine always works up to the deadline and no further: agents are stepped in
    blocks, each started only while one more fits (:meth:`margin_s`), and a tick cut by the
    deadline leaves the agents it did not reach stale, the next tick starting with them. So the
    number of agents updated per tick follows capacity smoothly, and every agent is refreshed in
    turn as often as capacity allows. The controller's only decision is the rung: a cheaper one
    (fewer iterations, then a shorter horizon) when the current rung cannot update every agent
    within ``target`` of the budget for ``patience`` ticks running, a richer one when its
    measured (or, never measured, assumed equal) cost would fit within ``climb`` of the budget
    for ``patience`` ticks running. Costs are per rung, so the two tests cannot both hold and
    the rung cannot cycle on a steady load. Nobody is left un-updated by choice: "stale actions"
    is for forced levels only.

    Args:
        target: share of the budget a rung must cover every agent in to be kept.
        climb: share of the budget a richer rung must be projected to need to climb to it.
        patience: consecutive ticks a test must hold before the rung changes.
        max_level: the cheapest rung the controller may pick (at most ``SHORTER_HORIZON``).
        skip: rungs the controller never picks (``Engine`` passes :func:`noop_levels`).
        smoothing: weight of the newest tick in each rung's cost average.
        margin_blocks: blocks of work (:func:`block_size`), at the measured cost, kept free
            before the deadline (a block's time varies under contention; one would still
            overrun often).
        tail_window: how many recent cut ticks' tails the margin is taken from: how long a
            tick cut by the deadline went on past the time its last block had to start by
            (the last block's overrun, the workers' and the master's wake-ups, the tick's
            bookkeeping), in blocks of the ticks' wall time per agent (a moving average), so
            that the margin follows the load as fast as that does.
        tail_headroom: the margin is this many times the second-longest tail in the window
            (one outlier alone does not widen it; the next tail may be longer still).
    """

    target: float = 0.9
    climb: float = 0.7
    patience: int = 2
    max_level: int = SHORTER_HORIZON
    skip: tuple[int, ...] = ()
    smoothing: float = 0.3
    margin_blocks: float = 1.5
    tail_window: int = 100
    tail_headroom: float = 1.25
    level: int = FULL
    cost_s: dict[int, float] = dataclasses.field(default_factory=dict)
    #: a rung's cost relative to the next cheaper rung's, measured a tick apart when the
    #: controller stepped down: predicts the richer rung from the current rung's fresh cost,
    #: so a load that has gone (or come) since is not read from a stale figure
    relative: dict[int, float] = dataclasses.field(default_factory=dict)
    _down: int = 0
    _up: int = 0
    _left: int | None = None
    _entered: bool = False            # the rung was just entered: its old cost is stale
    _tails: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    _cut: int = 0                     # ticks cut by the deadline so far
    _wall_cost: float = 0.0           # wall time x processes per agent updated (average)
    _cold: float = 0.0                # the longest tail of the cold ticks (blocks)
    _block: int = SUB_BLOCK           # the block the last margin was counted in (agents)
    _margin: float = 0.0              # the margin the engine was last given

    def __post_init__(self) -> None:
        if not 0.0 < self.climb < self.target <= 1.0:
            raise ValueError(f"degrade: need 0 < climb < target <= 1, got climb={self.climb}, "
                             f"target={self.target}")
        if not FULL <= self.max_level <= SHORTER_HORIZON:
            raise ValueError(f"degrade: max_level must be in {FULL}..{SHORTER_HORIZON} (the "
                             f"rotating fraction and stale actions are forced levels only)")
        if FULL in self.skip or any(not FULL < lv <= MAX_LEVEL for lv in self.skip):
            raise ValueError(f"degrade: skip may hold levels 1..{MAX_LEVEL}, got {self.skip}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"degrade: patience must be an int >= 1, got {self.patience!r}")

    def observe_tick(self, wall_s: float, budget_s: float, updated: int, n_agents: int,
                     parallel: int = 1, busy_s: float | None = None) -> int:
        """Record one tick (its wall time, budget, the agents it updated of ``n_agents``, on
        ``parallel`` processes, whose stepping took ``busy_s`` seconds together when known);
        return the rung for the next tick.

        The cost of an agent-step is ``busy_s / updated`` when the processes' own time is
        known, else ``wall_s * parallel / updated``: the tick's fixed costs (waking the
        workers, the world) would otherwise weigh on a tick that updated few agents, make the
        next one stop earlier still and feed on themselves."""
        if self.level not in AUTO_LEVELS or budget_s <= 0:
            return self.level
        tail = wall_s - max(0.0, budget_s - self._margin)     # past the last block's start
        if updated > 0 and wall_s > 0:
            cost = (busy_s if busy_s else wall_s * max(1, parallel)) / updated
            old = None if self._entered else self.cost_s.get(self.level)
            self.cost_s[self.level] = cost if old is None else (
                (1.0 - self.smoothing) * old + self.smoothing * cost)
            if self._left is not None and self._left in self.cost_s:
                self.relative[self._left] = self.cost_s[self._left] / self.cost_s[self.level]
            self._left, self._entered = None, False
        if updated > 0 and wall_s > 0:
            wall_cost = wall_s * max(1, parallel) / updated
            self._wall_cost = wall_cost if self._wall_cost == 0.0 else (
                (1.0 - self.smoothing) * self._wall_cost + self.smoothing * wall_cost)
        if self.level not in self.cost_s:
            return self.level
        if updated < n_agents:
            self._cut += 1
            blocks = tail / (self._wall_cost * self._block)
            if self._cut <= COLD_TICKS:
                self._cold = max(self._cold, blocks)
            else:
                self._tails.append(blocks)
                if len(self._tails) > self.tail_window:
                    self._tails.popleft()
        per_agent = self.cost_s[self.level] / max(1, parallel)
        cheaper = self._next(self.level, +1)
        richer = self._next(self.level, -1)
        short = cheaper is not None and n_agents * per_agent > self.target * budget_s
        room = richer is not None and (n_agents * per_agent * self.relative.get(richer, 1.0)
                                       < self.climb * budget_s)
        self._down = self._down + 1 if short else 0
        self._up = self._up + 1 if room and not short else 0
        if self._down >= self.patience and cheaper is not None:
            log.info("degradation level %d (%s) -> %d (%s): the tick budget is short",
                     self.level, LEVEL_NAMES[self.level], cheaper, LEVEL_NAMES[cheaper])
            self._left, self.level, self._down, self._entered = self.level, cheaper, 0, True
        elif self._up >= self.patience and richer is not None:
            log.info("degradation level %d (%s) -> %d (%s): the tick budget has room",
                     self.level, LEVEL_NAMES[self.level], richer, LEVEL_NAMES[richer])
            self.level, self._up, self._entered = richer, 0, True
        return self.level

    def margin_s(self, chunk: int, budget_s: float | None = None) -> float:
        """How long before the deadline the last block of a ``chunk``-agent chunk must start:
        ``margin_blocks`` blocks (:func:`block_size`) of the current rung's measured cost (0
        until measured), or ``tail_headroom`` times the second-longest recent tail in blocks
        (of the ticks' wall time per agent) when that is longer (``tail_window``; the first
        ``COLD_TICKS`` cut ticks are not counted, but their longest tail holds until two
        others are). With the tick's ``budget_s``, never more than ``MARGIN_SHARE`` of it."""
        self._block = block_size(chunk)
        tails = sorted(self._tails)
        tail = tails[-2] if len(tails) > 1 else self._cold
        self._margin = self._block * max(
            self.margin_blocks * self.cost_s.get(self.level, 0.0),
            self.tail_headroom * tail * self._wall_cost)
        if budget_s is not None:
            self._margin = min(self._margin, MARGIN_SHARE * budget_s)
        return self._margin

    def _next(self, level: int, direction: int) -> int | None:
        """The next rung the controller may pick from ``level`` in ``direction``, or None."""
        level += direction
        while FULL <= level <= self.max_level:
            if level not in self.skip:
                return level
            level += direction
        return None


def controller_for(degrade: DegradeController | bool | None,
                   populations: Sequence[tuple[int, int, int]]) -> DegradeController | None:
    """The controller an engine uses for ``degrade`` (True: a default one; False or None: none),
    told to skip the rungs that change nothing for ``populations`` (see :func:`noop_levels`)."""
    controller = DegradeController() if degrade is True else (degrade or None)
    if controller is not None:
        controller.skip = tuple(sorted(set(controller.skip) | set(noop_levels(populations))))
    return controller
