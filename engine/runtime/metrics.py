"""Tick metrics: timing percentiles over a window, utilisation, misses, levels, RSS and CPU.

Everything per tick goes into preallocated ring buffers and running totals, so recording
allocates nothing; the percentiles and the psutil figures are computed only when asked (for the
status line, ``--status-json`` and the Prometheus endpoint, which all read them from here).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import psutil

from engine.runtime.stale import StaleCounts, describe

#: the most columns the status line takes (the world's figures follow it)
STATUS_WIDTH = 100


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The figures of the status line and the run summary. ``stale_agents`` and
    ``stale_reasons``: the last tick's stale agents, in all and by reason;
    ``stale_agent_ticks``: stale agents summed over every tick recorded, by reason."""

    ticks: int
    tick_ms_p50: float
    tick_ms_p99: float
    utilisation: float
    missed: int
    level: int
    stale_agents: int
    stale_reasons: dict[str, int]
    stale_agent_ticks: dict[str, int]
    worker_busy_ms: tuple[float, ...]
    rss_mb: float
    cpu_percent: float
    agents_per_s: float


class TickMetrics:
    """Ring buffers of the last ``window`` ticks plus running totals: ``missed`` (engine steps
    over their budget), ``agent_steps`` (agents updated), ``stale_agent_ticks`` (stale
    agents by reason), and the fixed-rate loop's ``late_slots`` and ``dropped_slots``
    (:meth:`record_slot`); ``stale_reasons`` is the last tick's."""

    def __init__(self, n_agents: int, window: int = 1000) -> None:
        self.n_agents = n_agents
        self._wall = np.zeros(window)
        self._budget = np.zeros(window)
        self._updated = np.zeros(window)
        self._count = 0
        self.missed = 0
        self.level = 0
        self.stale_agents = 0
        self.stale_reasons = self.stale_agent_ticks = StaleCounts()
        self.agent_steps = 0
        self.late_slots = 0
        self.dropped_slots = 0
        self.worker_busy: tuple[float, ...] = ()
        self._processes: list[psutil.Process] = []

    def clear(self) -> None:
        """Forget every tick recorded so far (the watched processes stay)."""
        for buffer in (self._wall, self._budget, self._updated):
            buffer[:] = 0.0
        self._count = self.missed = self.level = self.stale_agents = 0
        self.agent_steps = self.late_slots = self.dropped_slots = 0
        self.stale_reasons = self.stale_agent_ticks = StaleCounts()
        self.worker_busy = ()

    @property
    def ticks(self) -> int:
        """Ticks recorded since the start (or the last :meth:`clear`)."""
        return self._count

    def watch(self, pids: list[int]) -> None:
        """Processes whose RSS and CPU are summed (the master first, then its workers)."""
        processes = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)             # start the CPU-time interval
                processes.append(proc)
            except psutil.NoSuchProcess:
                continue
        self._processes = processes                # whole, for a reader in another thread

    def record(self, wall_s: float, budget_s: float | None, level: int, reasons: StaleCounts,
               worker_busy: tuple[float, ...] = ()) -> None:
        """One tick: its engine step's time, budget and level, its stale agents by reason
        (:func:`engine.runtime.stale.count_stale`) and each worker's busy seconds."""
        stale = reasons.total
        i = self._count % self._wall.shape[0]
        self._wall[i] = wall_s
        self._budget[i] = budget_s if budget_s is not None else np.nan
        self._updated[i] = self.n_agents - stale
        self._count += 1
        self.agent_steps += self.n_agents - stale
        if budget_s is not None and wall_s > budget_s:
            self.missed += 1
        self.level = level
        self.stale_agents = stale
        self.stale_reasons = reasons
        self.stale_agent_ticks = self.stale_agent_ticks + reasons
        self.worker_busy = worker_busy

    def record_slot(self, late: bool, dropped: int) -> None:
        """The fixed-rate loop's verdict on a slot: it ended ``late`` (engine plus world after
        its due time), and ``dropped`` whole periods were skipped to catch up."""
        self.late_slots += late
        self.dropped_slots += dropped

    def process_rss(self) -> list[int]:
        """Resident set size in bytes of each watched process, in :meth:`watch` order (the
        master first); 0 for one that has exited."""
        sizes = []
        for proc in self._processes:
            try:
                sizes.append(int(proc.memory_info().rss))
            except psutil.NoSuchProcess:
                sizes.append(0)
        return sizes

    def snapshot(self) -> Snapshot:
        n = min(self._count, self._wall.shape[0])
        wall = self._wall[:n] if n else np.zeros(1)
        last = (self._count - 1) % self._wall.shape[0]
        budget = self._budget[last] if n else np.nan
        rss = float(sum(self.process_rss()))
        cpu = 0.0
        for proc in self._processes:
            try:
                cpu += proc.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
        p50 = float(np.median(wall))
        busy = float(wall.sum())
        updated = float(self._updated[:n].sum()) if n else 0.0
        return Snapshot(
            ticks=self._count, tick_ms_p50=1e3 * p50,
            tick_ms_p99=1e3 * float(np.percentile(wall, 99)),
            utilisation=float(wall[last] / budget) if n and budget == budget and budget > 0
            else float("nan"),
            missed=self.missed, level=self.level, stale_agents=self.stale_agents,
            stale_reasons=self.stale_reasons.as_dict(),
            stale_agent_ticks=self.stale_agent_ticks.as_dict(),
            worker_busy_ms=tuple(1e3 * b for b in self.worker_busy), rss_mb=rss / 2**20,
            cpu_percent=cpu, agents_per_s=updated / busy if busy > 0 else 0.0)

    def status_line(self) -> str:
        """One line of at most :data:`STATUS_WIDTH` columns: the engine step's p50/p99, the
        level, missed ticks (step over its budget), the last tick's stale agents as a share
        of all with each reason's share (:func:`engine.runtime.stale.describe`; only the
        reasons' names, or only the total, where the shares would not fit), agent-steps/s,
        RSS."""
        s = self.snapshot()
        head = (f"tick {s.ticks} p50/p99 {s.tick_ms_p50:.1f}/{s.tick_ms_p99:.1f} ms L{s.level} "
                f"missed {s.missed} ")
        tail = f" {rate(s.agents_per_s)} agent-steps/s RSS {s.rss_mb:.0f} MB"
        for form in ("shares", "names"):
            line = head + describe(self.stale_reasons, self.n_agents, form) + tail
            if len(line) <= STATUS_WIDTH:
                return line
        return head + describe(self.stale_reasons, self.n_agents, "total") + tail


def rate(per_s: float) -> str:
    """A rate in at most 5 characters up to 10 million: 9,999, 12.3k, 123k, 1.23M."""
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f}M"
    if per_s >= 1e5:
        return f"{per_s / 1e3:.0f}k"
    return f"{per_s / 1e3:.1f}k" if per_s >= 1e4 else f"{per_s:,.0f}"
