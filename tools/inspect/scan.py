"""One streaming pass over a tick log's ticks (:class:`Scan`), for the summary and the plot.

Ticks are read one at a time and reduced with ``np.bincount``, so memory does not grow with the
number of agents times ticks: a few scalars per tick (for the percentiles and the plot) plus one
tick's arrays.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from engine.ticklog.logset import TickLogSet
    from engine.ticklog.schema import TickRecord

GRID_WORLDS = ("grid", "foraging")
"""World names whose observation modality 0 is the observed cell (row-major ``size x size``)."""
MAX_GAPS = 100
"""At most this many gaps (runs of missing tick numbers) are listed; all are counted."""
MAX_LEVEL_RUNS = 1000
"""At most this many runs of ticks at a non-zero level are listed; all are counted."""
MAX_ACTION = 1 << 16
"""Action values at or above this (or below 0) are counted as out of range, not binned."""
TIMELINE_BINS = 512
"""The action timeline keeps at most this many bins of consecutive ticks (each twice as wide
whenever the log outgrows them), so its memory does not grow with the log's length."""


def grid_size(world: Mapping[str, Any]) -> int | None:
    """The side of a grid world's square (its config's ``size``), or None for other worlds."""
    size = world.get("size")
    if world.get("name") in GRID_WORLDS and isinstance(size, int) and size > 0:
        return size
    return None


def _bincount(values: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Counts of each value in ``0..limit-1`` (trailing zeros trimmed) and how many values fell
    outside that range."""
    import numpy as np

    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi < limit:
        return np.bincount(values.astype(np.intp, copy=False)), 0
    inside = values[(values >= 0) & (values < limit)].astype(np.intp, copy=False)
    return np.bincount(inside), int(values.size - inside.size)


def _add_counts(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``total + counts`` where the two may differ in length (the longer length is kept)."""
    import numpy as np

    if counts.size > total.size:
        total = np.concatenate([total, np.zeros(counts.size - total.size, dtype=np.int64)])
    total[:counts.size] += counts
    return total


@dataclass
class ActionTimeline:
    """Counts of each action of control factor 0 in bins of ``width`` consecutive ticks from
    ``first`` (at most :data:`TIMELINE_BINS`; adjacent bins merge when it would be more)."""

    width: int = 1
    first: int | None = None
    rows: Any = None  # int64 (bins, actions)
    filled: Any = None  # bool (bins,): whether any tick fell in the bin

    def add(self, tick: int, actions: np.ndarray) -> None:
        import numpy as np

        counts, _ = _bincount(actions, MAX_ACTION)
        if self.first is None:
            self.first = tick
            self.rows = np.zeros((0, 0), dtype=np.int64)
            self.filled = np.zeros(0, dtype=bool)
        b = (tick - self.first) // self.width
        while b >= TIMELINE_BINS:
            self._merge()
            b = (tick - self.first) // self.width
        bins, cols = self.rows.shape
        if b >= bins or counts.size > cols:
            grown = np.zeros((max(bins, b + 1), max(cols, counts.size)), dtype=np.int64)
            grown[:bins, :cols] = self.rows
            self.rows = grown
            self.filled = np.concatenate([self.filled, np.zeros(grown.shape[0] - bins, bool)])
        self.rows[b, :counts.size] += counts
        self.filled[b] = True

    def _merge(self) -> None:
        import numpy as np

        if self.rows.shape[0] % 2:
            self.rows = np.vstack([self.rows, np.zeros((1, self.rows.shape[1]), np.int64)])
            self.filled = np.append(self.filled, False)
        self.rows = self.rows.reshape(-1, 2, self.rows.shape[1]).sum(axis=1)
        self.filled = self.filled.reshape(-1, 2).any(axis=1)
        self.width *= 2

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """(first tick of each bin that holds ticks, each action's share of its agent-ticks
        ``(bins, actions)``)."""
        import numpy as np

        if self.first is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
        keep = np.flatnonzero(self.filled)
        rows = self.rows[keep].astype(np.float64)
        totals = rows.sum(axis=1, keepdims=True)
        return self.first + keep * self.width, rows / np.maximum(totals, 1.0)


@dataclass
class Scan:
    """What one pass over a log's ticks accumulates: per-tick scalars and running totals."""

    n_agents: int
    cells: int | None
    ticks: array = field(default_factory=lambda: array("q"))
    durations: array = field(default_factory=lambda: array("d"))
    budgets: array = field(default_factory=lambda: array("d"))   # NaN: none recorded
    levels: array = field(default_factory=lambda: array("q"))
    stale: array = field(default_factory=lambda: array("q"))
    stale_by_reason: dict[str, int] = field(default_factory=dict)
    stale_unrecorded: int = 0  # stale agent-ticks in ticks that recorded no reasons
    wall_first: float | None = None
    wall_last: float | None = None
    gaps: list[list[int]] = field(default_factory=list)
    gap_runs: int = 0
    missing: int = 0
    level_counts: Counter[int] = field(default_factory=Counter)
    level_runs: list[dict[str, int]] = field(default_factory=list)
    level_run_count: int = 0
    run: list[int] | None = None  # [level, first tick, last tick] of the run in progress
    actions: list[Any] = field(default_factory=list)  # per factor: int64 counts
    actions_out_of_range: list[int] = field(default_factory=list)
    modalities: set[int] = field(default_factory=set)
    factors: set[int] = field(default_factory=set)
    other_agent_count: int = 0
    timing_sums: dict[str, float] = field(default_factory=dict)
    timing_counts: Counter[str] = field(default_factory=Counter)
    occupancy: Any = None  # int64 (cells,) when cells is not None
    off_grid: int = 0
    timeline: ActionTimeline | None = None  # for the plot only
    failovers: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rec: TickRecord) -> None:
        """Fold one tick in."""
        if self.ticks:
            gap = rec.tick - self.ticks[-1] - 1
            if gap > 0:
                self.gap_runs += 1
                self.missing += gap
                if len(self.gaps) < MAX_GAPS:
                    self.gaps.append([self.ticks[-1] + 1, rec.tick - 1])
                self._end_run()
        else:
            self.wall_first = rec.wall_time
        self.wall_last = rec.wall_time
        self.ticks.append(rec.tick)
        self.durations.append(rec.duration_s)
        self.budgets.append(float(rec.timings.get("budget_s", float("nan"))))
        self.levels.append(rec.level)
        self.stale.append(int(rec.stale_agents.size))
        if rec.stale_reasons is None:
            self.stale_unrecorded += int(rec.stale_agents.size)
        else:
            for reason, count in rec.stale_reasons.as_dict().items():
                self.stale_by_reason[reason] = self.stale_by_reason.get(reason, 0) + count
        if rec.failover is not None:
            self.failovers.append({"tick": rec.tick, "error": rec.failover})
        self.level_counts[rec.level] += 1
        if self.run is not None and self.run[0] != rec.level:
            self._end_run()
        if self.run is None:
            self.run = [rec.level, rec.tick, rec.tick]
        self.run[2] = rec.tick
        obs, act = rec.observations, rec.actions
        self.modalities.add(obs.shape[1])
        self.factors.add(act.shape[1])
        if obs.shape[0] != self.n_agents:
            self.other_agent_count += 1
        for f in range(act.shape[1]):
            counts, out = _bincount(act[:, f], MAX_ACTION)
            if f == len(self.actions):
                self.actions.append(counts.astype("int64"))
                self.actions_out_of_range.append(out)
            else:
                self.actions[f] = _add_counts(self.actions[f], counts)
                self.actions_out_of_range[f] += out
        for key, value in rec.timings.items():
            if math.isfinite(value):
                self.timing_sums[key] = self.timing_sums.get(key, 0.0) + value
                self.timing_counts[key] += 1
        if self.timeline is not None and act.shape[1] > 0:
            self.timeline.add(rec.tick, act[:, 0])
        if self.cells is not None and obs.shape[1] > 0:
            counts, out = _bincount(obs[:, 0], self.cells)
            self.occupancy[:counts.size] += counts
            self.off_grid += out

    def finish(self) -> None:
        """Close the level run in progress (call after the last tick)."""
        self._end_run()

    def _end_run(self) -> None:
        if self.run is None:
            return
        level, first, last = self.run
        self.run = None
        if level == 0:
            return
        self.level_run_count += 1
        if len(self.level_runs) < MAX_LEVEL_RUNS:
            self.level_runs.append({"level": level, "first": first, "last": last,
                                    "ticks": last - first + 1})


def scan_ticks(reader: TickLogSet, occupancy: bool = False) -> Scan:
    """One pass over every tick of ``reader`` (one tick's arrays in memory at a time);
    ``occupancy`` (for the plot) also sums the observed cells of a grid world and keeps the
    action timeline."""
    import numpy as np

    header = reader.header
    cells = None
    if occupancy:
        size = grid_size(header.world)
        cells = None if size is None else size * size
    scan = Scan(n_agents=header.n_agents, cells=cells,
                timeline=ActionTimeline() if occupancy else None)
    if cells is not None:
        scan.occupancy = np.zeros(cells, dtype=np.int64)
    for rec in reader.ticks():
        scan.add(rec)
    scan.finish()
    return scan


def count_snapshots(reader: TickLogSet) -> int:
    """Belief snapshots in the log: the footer's count, or (no footer) those read back."""
    footer = reader.footer
    if footer is not None:
        return footer.snapshots_written
    return sum(1 for _ in reader.snapshots())
