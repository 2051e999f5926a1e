"""The soak's verdict: :func:`evaluate` checks the bounds on the samples and the closing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tools.soak.options import WARMUP_SLACK_S, SoakOptions
from tools.soak.report import mb
from tools.soak.samples import Closing, Sample


def reference_index(samples: Sequence[Sample], warmup_s: float) -> int | None:
    """Index of the first sample after the warm-up (never the first sample, which is taken
    before the first tick), or None when no sample is past the warm-up."""
    for i, sample in enumerate(samples):
        if i >= 1 and sample.elapsed_s >= warmup_s - WARMUP_SLACK_S:
            return i
    return None


def judge_quality(ticks: int, missed: int, stale_agent_ticks: int, options: SoakOptions
                  ) -> tuple[list[str], dict[str, Any]]:
    """The run's quality against ``options.max_stale_pct`` (share of agent-ticks not
    updated) and ``options.max_missed_pct`` (share of ticks over budget): failures (one
    sentence each) and the figures."""
    agent_ticks = max(1, ticks * options.agents)
    stale_pct = 100.0 * stale_agent_ticks / agent_ticks
    missed_pct = 100.0 * missed / max(1, ticks)
    figures = {"stale_agent_ticks": stale_agent_ticks, "stale_pct": stale_pct,
               "missed_pct": missed_pct, "max_stale_pct": options.max_stale_pct,
               "max_missed_pct": options.max_missed_pct}
    failures = []
    if ticks and stale_pct > options.max_stale_pct:
        failures.append(f"{stale_pct:.1f}% of agent-ticks were stale (bound "
                        f"{options.max_stale_pct:g}%): {stale_agent_ticks:,} of "
                        f"{agent_ticks:,} agent updates did not happen")
    if ticks and missed_pct > options.max_missed_pct:
        failures.append(f"{missed_pct:.1f}% of ticks missed their budget (bound "
                        f"{options.max_missed_pct:g}%): {missed} of {ticks}")
    return failures, figures


def evaluate(samples: Sequence[Sample], warmup_s: float, max_rss_growth_pct: float,
             closing: Closing | None = None, run_id: str = "") -> tuple[list[str], dict[str, Any]]:
    """Check the bounds on ``samples`` (and on ``closing``, when the engine has closed).

    Returns the failures (one sentence each, naming the bound and the measured value) and
    the figures they were judged on. Growth is measured from the first sample after the
    warm-up to the last sample; with no such pair (an interrupted run) it is not judged
    (``growth_checked`` False).
    """
    failures: list[str] = []
    figures: dict[str, Any] = {"warmup_s": warmup_s, "max_rss_growth_pct": max_rss_growth_pct}
    ref_i = reference_index(samples, warmup_s)
    checked = ref_i is not None and ref_i < len(samples) - 1
    figures["growth_checked"] = checked
    if ref_i is not None:
        ref, last = samples[ref_i], samples[-1]
        growth = 100.0 * (last.rss_total - ref.rss_total) / max(ref.rss_total, 1)
        figures.update(
            warmup_end_s=ref.elapsed_s, rss_warmup_end=ref.rss_total, rss_end=last.rss_total,
            rss_growth_pct=growth, rss_max=max(s.rss_total for s in samples[ref_i:]),
            fds_warmup_end=ref.fds_total, fds_end=last.fds_total,
            fds_max=max(s.fds_total for s in samples[ref_i:]))
        if checked and growth > max_rss_growth_pct:
            failures.append(
                f"RSS grew {growth:.2f}% after the warm-up (bound {max_rss_growth_pct:g}%): "
                f"master + workers {mb(ref.rss_total)} at {ref.elapsed_s:.0f} s, "
                f"{mb(last.rss_total)} at {last.elapsed_s:.0f} s (master "
                f"{mb(ref.rss_master)} -> {mb(last.rss_master)})")
        if checked and last.fds_total > ref.fds_total:
            failures.append(
                f"open file descriptors grew after the warm-up (bound: no growth): "
                f"{ref.fds_total} at {ref.elapsed_s:.0f} s, {last.fds_total} at "
                f"{last.elapsed_s:.0f} s (master {ref.fds_master} -> {last.fds_master}, "
                f"workers {list(ref.fds_workers)} -> {list(last.fds_workers)})")
    if samples:
        first = samples[0]
        figures.update(shm_entries=first.shm_entries, shm_bytes=first.shm_bytes)
        for sample in samples[1:]:
            if (sample.shm_entries, sample.shm_bytes) != (first.shm_entries, first.shm_bytes):
                failures.append(
                    f"this run's /dev/shm changed while running (bound: constant): "
                    f"{first.shm_entries} entries / {first.shm_bytes:,} bytes at the start, "
                    f"{sample.shm_entries} entries / {sample.shm_bytes:,} bytes at "
                    f"{sample.elapsed_s:.0f} s")
                break
    if closing is not None:
        figures.update(shm_left_after_close=list(closing.shm_left),
                       workers_alive_after_close=list(closing.workers_alive),
                       fds_master_before=closing.fds_master_before,
                       fds_master_after=closing.fds_master_after)
        if closing.shm_left:
            names = ", ".join(closing.shm_left[:5])
            more = f" and {len(closing.shm_left) - 5} more" if len(closing.shm_left) > 5 else ""
            failures.append(
                f"{len(closing.shm_left)} /dev/shm entries of run {run_id or '?'} left after "
                f"the engine closed (bound: none): {names}{more}")
        if closing.workers_alive:
            failures.append(
                f"{len(closing.workers_alive)} worker processes alive after the engine closed "
                f"(bound: none): pids {', '.join(map(str, closing.workers_alive))}")
        if closing.fds_master_after > closing.fds_master_before:
            failures.append(
                f"the master holds {closing.fds_master_after} open file descriptors after the "
                f"engine closed, {closing.fds_master_after - closing.fds_master_before} more "
                f"than before it started (bound: back to {closing.fds_master_before})")
    return failures, figures
