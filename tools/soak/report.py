"""The soak's printed lines: one status line per sample and the closing summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.soak.samples import Sample, SoakReport

if TYPE_CHECKING:
    import numpy as np

MB = float(2**20)


def mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def format_sample(sample: Sample, duration_s: float, warmup: bool) -> str:
    """One status line: time, ticks, RSS, fds, /dev/shm, tick time, misses, levels."""
    workers = ", ".join(f"{r / MB:.0f}" for r in sample.rss_workers)
    rss = f"RSS {sample.rss_total / MB:7.1f} MB (master {sample.rss_master / MB:.0f}"
    rss += f" + workers {workers})" if workers else ")"
    timing = ("tick p50 -       p99 -      " if sample.tick_ms_p50 is None else
              f"tick p50 {sample.tick_ms_p50:6.2f} p99 {sample.tick_ms_p99:6.2f} ms")
    levels = ",".join(f"{k}:{v}" for k, v in enumerate(sample.level_counts) if v) or "-"
    return (f"soak {sample.elapsed_s:7.1f}/{duration_s:g} s  tick {sample.ticks:7d}  {rss}  "
            f"fds {sample.fds_total}  shm {sample.shm_entries} entries "
            f"{sample.shm_bytes / MB:.1f} MB (free {sample.shm_free / 2**30:.1f} GB)  "
            f"{timing}  missed {sample.missed}  levels {levels}  respawns {sample.respawns}"
            f"{'  [warm-up]' if warmup else ''}")


def p99_per_minute(walls: np.ndarray, ticks_per_minute: int) -> list[float]:
    import numpy as np

    return [1e3 * float(np.percentile(walls[i:i + ticks_per_minute], 99))
            for i in range(0, walls.size, ticks_per_minute)]


def summary_lines(report: SoakReport) -> list[str]:
    """The closing lines: RSS, fds, /dev/shm, tick time per minute, misses (no verdict)."""
    s = report.summary
    lines = [f"summary: {s.get('ticks', 0)} ticks in {s.get('elapsed_s', 0.0):.1f} s"
             f"{' (interrupted)' if report.interrupted else ''}; missed {s.get('missed', 0)}, "
             f"dropped slots {s.get('dropped_slots', 0)}; levels "
             + (", ".join(f"{k}:{v}" for k, v in enumerate(s.get("level_counts", [])) if v)
                or "-") + f"; respawns {s.get('respawns', 0)}"]
    if "stale_pct" in s:
        lines.append(f"quality: {s['stale_pct']:.2f}% of agent-ticks stale (bound "
                     f"{s['max_stale_pct']:g}%{_by_reason(report)}), {s['missed_pct']:.2f}% "
                     f"of ticks missed (bound {s['max_missed_pct']:g}%)")
    if "rss_warmup_end" in s:
        growth = (f"{s['rss_growth_pct']:+.2f}%" if s.get("growth_checked")
                  else "not judged (no sample after the warm-up's)")
        lines.append(f"RSS (master + workers): {mb(s['rss_warmup_end'])} at the end of the "
                     f"warm-up ({s['warmup_end_s']:.0f} s), {mb(s['rss_end'])} at the end: "
                     f"{growth} (bound {s['max_rss_growth_pct']:g}%); open fds "
                     f"{s['fds_warmup_end']} -> {s['fds_end']}")
    else:
        lines.append("RSS and fds: not judged (the run ended within the warm-up)")
    if "shm_entries" in s:
        lines.append(f"/dev/shm: {s['shm_entries']} entries, {s['shm_bytes']:,} bytes; after "
                     f"close: {len(s.get('shm_left_after_close', []))} entries left, "
                     f"{len(s.get('workers_alive_after_close', []))} workers alive, master fds "
                     f"{s.get('fds_master_before')} before start, {s.get('fds_master_after')} "
                     f"after close")
    p99 = s.get("tick_ms_p99_per_minute") or []
    if p99:
        shown = ", ".join(f"{v:.1f}" for v in p99[:60])
        more = f" ... ({len(p99)} minutes)" if len(p99) > 60 else ""
        lines.append(f"tick p99 per minute (ms): {shown}{more}; whole run p50 "
                     f"{s['tick_ms_p50']:.2f} ms, p99 {s['tick_ms_p99']:.2f} ms")
    return lines


def _by_reason(report: SoakReport) -> str:
    """``; deadline 1.2%, worker 0.1%``: the stale agent-ticks' reasons, each as a share of
    all agent-ticks (empty when none was stale or the reasons are not known)."""
    from engine.runtime.stale import StaleCounts, shares

    counts = StaleCounts.from_dict(report.summary.get("stale_by_reason") or {})
    agent_ticks = int(report.summary.get("ticks", 0)) * int(report.options.get("agents", 0))
    return f"; {shares(counts, agent_ticks, short=False)}" if counts.total else ""
