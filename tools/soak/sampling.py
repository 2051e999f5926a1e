"""Looking at a running soak: the world reset once across run segments, and the probe that reads
RSS, file descriptors and ``/dev/shm`` usage of the engine's processes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tools.soak.samples import Sample

if TYPE_CHECKING:
    import numpy as np
    import psutil

    from engine import Engine
    from world.base import World


class ContinuingWorld:
    """The world, reset once: later ``reset`` calls (one per :meth:`Engine.run` segment)
    return the last observations instead of starting a new episode."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._obs: np.ndarray | None = None

    def reset(self, seed: int) -> np.ndarray:
        if self._obs is None:
            self._obs = self.world.reset(seed)
        return self._obs

    def step(self, actions: np.ndarray) -> np.ndarray:
        self._obs = self.world.step(actions)
        return self._obs


class Probe:
    """Reads RSS, fds and /dev/shm usage of one engine's processes (psutil, ``os.stat``)."""

    def __init__(self, engine: Engine) -> None:
        import psutil

        self.engine = engine
        self.master = psutil.Process(os.getpid())
        self.seen_workers: dict[int, psutil.Process] = {}

    def worker_processes(self) -> list[psutil.Process]:
        """The worker processes the engine's metrics watch (the master excluded)."""
        import psutil

        pids = self.engine.worker_pids
        procs = []
        for pid in pids:
            if pid == self.master.pid:
                continue
            proc = self.seen_workers.get(pid)
            if proc is None:
                try:
                    proc = self.seen_workers[pid] = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
            procs.append(proc)
        return procs

    def take(self, elapsed_s: float, ticks: int, walls: np.ndarray,
             run: Any = None) -> Sample:
        """A sample; ``walls`` the interval's engine tick times, ``run`` its RunSummary."""
        import numpy as np
        import psutil

        from engine.runtime.shm import SHM_DIR, entries_of

        rss_w, fds_w = [], []
        for proc in self.worker_processes():
            try:
                rss_w.append(proc.memory_info().rss)
                fds_w.append(proc.num_fds())
            except psutil.NoSuchProcess:    # died since: the engine respawns it
                continue
        run_id = self.engine.run_id or ""
        entries = entries_of([run_id]) if run_id else []
        shm_bytes = 0
        for entry in entries:
            try:
                shm_bytes += os.stat(SHM_DIR / entry).st_size
            except OSError:
                continue
        try:
            st = os.statvfs(SHM_DIR)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = 0
        p50 = p99 = None
        if walls.size:
            p50 = 1e3 * float(np.median(walls))
            p99 = 1e3 * float(np.percentile(walls, 99))
        return Sample(
            elapsed_s=elapsed_s, ticks=ticks, rss_master=self.master.memory_info().rss,
            rss_workers=tuple(rss_w), fds_master=self.master.num_fds(), fds_workers=tuple(fds_w),
            shm_entries=len(entries), shm_bytes=shm_bytes, shm_free=free,
            tick_ms_p50=p50, tick_ms_p99=p99,
            missed=run.missed if run is not None else 0,
            dropped_slots=run.dropped_slots if run is not None else 0,
            level_counts=tuple(run.level_counts) if run is not None else (),
            respawns=int(getattr(self.engine, "respawns", 0)))

    def workers_alive(self) -> tuple[int, ...]:
        """Pids of every worker ever seen that still runs (zombies count as gone)."""
        import psutil

        alive = []
        for pid, proc in self.seen_workers.items():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        return tuple(alive)
