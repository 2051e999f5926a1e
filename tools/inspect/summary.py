"""The summary of a tick log (:func:`summarize`): header, completeness, ticks and gaps, tick
time against the budget, degradation timeline, stale agents, action histograms, snapshots."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tools.inspect.scan import Scan, count_snapshots, scan_ticks

if TYPE_CHECKING:
    from engine.ticklog.logset import TickLogSet


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarize the tick log at ``path`` in one streaming pass (JSON-ready dict).

    Keys: ``path``, ``file_bytes`` (of every file read), ``files`` (count, first, last,
    rotated_away: a rotated set's earlier files no longer on disk, missing_next: the file its
    last names as the next when absent), ``engine_version``, ``format_version``, ``truncated``,
    ``truncated_at``, ``has_footer``, ``footer``; header fields ``agents``, ``hz``,
    ``budget_s``, ``seed``, ``workers``, ``model_hash``, ``model_npz_bytes``, ``config``,
    ``world``, ``created_unix``; ``ticks`` (count, first, last, missing, gap_runs, gaps
    ``[[first missing, last missing], ...]``, wall_s, rate_hz); ``shape`` (modalities,
    factors, ticks whose agent count is not the header's); ``tick_time`` (p50/p90/p99/max/mean
    in seconds, over_budget count and fraction); ``levels`` (counts by level; runs of ticks at
    a non-zero level ``{"level", "first", "last", "ticks"}``; run_count); ``stale`` (total
    agent-ticks, max in one tick and that tick, ticks with any, ``by_reason``: agent-ticks of
    each reason of ``engine.runtime.stale``, ``unrecorded``: agent-ticks of ticks that
    recorded no reasons, as in older logs); ``actions`` (per factor: counts
    of each action index over all agents and ticks); ``timings_mean_s``; ``snapshots``;
    ``failovers`` (``{"tick", "error"}`` for each tick whose device failed over to the CPU).

    Raises :class:`engine.ticklog.TickLogError` for a file that is not a readable tick log.
    """
    from engine.ticklog.logset import open_log

    with open_log(path) as reader:
        scan = scan_ticks(reader)
        return summary_of(reader, scan)


def summary_of(reader: TickLogSet, scan: Scan) -> dict[str, Any]:
    import numpy as np

    h = reader.header
    footer = reader.footer
    budget = 1.0 / h.hz if h.hz else None
    n = len(scan.ticks)
    durations = np.frombuffer(scan.durations, dtype=np.float64) if n else np.zeros(0)
    tick_time: dict[str, Any] = {"p50_s": None, "p90_s": None, "p99_s": None, "max_s": None,
                                 "mean_s": None, "over_budget": None,
                                 "over_budget_fraction": None}
    if n:
        p50, p90, p99 = np.percentile(durations, [50, 90, 99])
        tick_time.update(p50_s=float(p50), p90_s=float(p90), p99_s=float(p99),
                         max_s=float(durations.max()), mean_s=float(durations.mean()))
        given = np.frombuffer(scan.budgets, dtype=np.float64)
        if budget is not None or not np.isnan(given).all():
            # a missed tick: the engine's step took longer than the budget it was given
            # (recorded per tick; the period 1/hz for logs that did not record it)
            limit = np.where(np.isnan(given), np.inf if budget is None else budget, given)
            over = int(np.count_nonzero(durations > limit))
            tick_time.update(over_budget=over, over_budget_fraction=over / n)
    stale = np.frombuffer(scan.stale, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    wall_s = (scan.wall_last - scan.wall_first) if n else None  # type: ignore[operator]
    return {
        "path": reader.path,
        "file_bytes": reader.size,
        "files": {"count": len(reader.files), "first": reader.files[0],
                  "last": reader.files[-1], "rotated_away": list(reader.rotated_away),
                  "missing_next": reader.missing_next},
        "engine_version": h.engine_version,
        "format_version": h.format_version,
        "truncated": bool(reader.truncated),
        "truncated_at": reader.truncated_at,
        "has_footer": footer is not None,
        "footer": None if footer is None else {
            "ticks_written": footer.ticks_written, "snapshots_written": footer.snapshots_written,
            "queue_full_waits": footer.queue_full_waits, "error": footer.error,
            "totals": footer.totals},
        "agents": h.n_agents,
        "hz": h.hz,
        "budget_s": budget,
        "seed": h.seed,
        "workers": h.workers,
        "model_hash": h.model_hash,
        "model_npz_bytes": None if h.model_npz is None else len(h.model_npz),
        "config": h.config,
        "world": h.world,
        "extra": h.extra,
        "created_unix": h.created_unix,
        "ticks": {
            "count": n,
            "first": scan.ticks[0] if n else None,
            "last": scan.ticks[-1] if n else None,
            "missing": scan.missing,
            "gap_runs": scan.gap_runs,
            "gaps": scan.gaps,
            "wall_s": wall_s,
            "rate_hz": (n - 1) / wall_s if n > 1 and wall_s else None,
        },
        "shape": {"modalities": sorted(scan.modalities), "factors": sorted(scan.factors),
                  "ticks_with_other_agent_count": scan.other_agent_count},
        "tick_time": tick_time,
        "levels": {"counts": dict(sorted(scan.level_counts.items())),
                   "runs": scan.level_runs, "run_count": scan.level_run_count},
        "stale": {"total": int(stale.sum()), "max": int(stale.max()) if n else 0,
                  "max_tick": scan.ticks[int(stale.argmax())] if n and stale.max() > 0
                  else None,
                  "ticks_with_stale": int(np.count_nonzero(stale)),
                  "by_reason": _by_reason(scan), "unrecorded": scan.stale_unrecorded},
        "actions": [{"factor": f, "counts": [int(c) for c in counts],
                     "out_of_range": scan.actions_out_of_range[f]}
                    for f, counts in enumerate(scan.actions)],
        "timings_mean_s": {k: scan.timing_sums[k] / scan.timing_counts[k]
                           for k in sorted(scan.timing_sums)},
        "snapshots": count_snapshots(reader),
        "failovers": scan.failovers,
    }


def _by_reason(scan: Scan) -> dict[str, int]:
    """The stale agent-ticks of each reason, every reason listed."""
    from engine.runtime.stale import STALE_REASONS

    return {reason: scan.stale_by_reason.get(reason, 0) for reason in STALE_REASONS}
