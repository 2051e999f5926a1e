"""The soak itself: :func:`soak` drives an engine for the whole duration, sampling between
run segments, then closes it and checks what is left."""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from tools.progress import STARTING
from tools.soak.checks import evaluate, judge_quality
from tools.soak.options import WARMUP_SLACK_S, SoakOptions
from tools.soak.report import format_sample, p99_per_minute, summary_lines
from tools.soak.samples import Closing, Sample, SoakReport
from tools.soak.sampling import ContinuingWorld, Probe

if TYPE_CHECKING:
    import numpy as np


def soak(options: SoakOptions, out: TextIO = sys.stdout) -> SoakReport:
    """Run the soak ``options`` describe, printing a status line per sample to ``out``.

    SIGINT or SIGTERM (once the engine has started) ends the run after the current tick; the
    report then covers the samples so far (``interrupted``, ``signal``). Raises UsageError
    (a ValueError) for options :meth:`SoakOptions.problem` rejects, and lets the engine's
    errors through (the engine and the tick log are closed first).
    """
    problem = options.problem()
    if problem:
        from engine.errors import UsageError

        raise UsageError(problem)
    import numpy as np

    from engine import Engine, InferenceConfig, TickInfo
    from engine.runtime.shm import entries_of
    from engine.runtime.stale import StaleCounts
    from engine.ticklog.recorder import TickRecorder
    from world.registry import make_world

    world = make_world(options.world, options.world_size, options.agents)
    n_ticks, per_sample, warmup = options.n_ticks, options.ticks_per_sample, options.warmup
    print(f"agentloop soak: {options.agents:,} agents in the {options.world} world (size "
          f"{options.world_size}), policy_len {options.policy_len}, {options.workers or 'no'} "
          f"worker process{'' if options.workers == 1 else 'es'}, {options.duration_s:g} s at "
          f"{options.hz:g} Hz ({n_ticks} ticks); a sample every {options.sample_every_s:g} s, "
          f"warm-up {warmup:g} s, RSS growth bound {options.max_rss_growth_pct:g}%", file=out)
    print(STARTING, file=out, flush=True)
    started = time.monotonic()
    engine = Engine(world.model(), options.agents, workers=options.workers,
                    config=InferenceConfig(policy_len=options.policy_len), seed=options.seed)
    _start_resource_tracker()
    probe = Probe(engine)
    fds_before = probe.master.num_fds()
    walls = np.full(n_ticks, np.nan)          # touched now: no RSS growth from bookkeeping
    stale = np.zeros(n_ticks, dtype=np.int64)
    samples: list[Sample] = []
    recorder = None
    run_id, signum, error, total = "", None, None, None
    try:
        if options.log:
            recorder = TickRecorder(engine, options.log, hz=options.hz,
                                    world=world.config(), snapshot_every=options.snapshot_every,
                                    extra={"soak": True}, overwrite=options.overwrite_log,
                                    max_bytes=options.log_max_bytes, rotate=options.log_rotate)
        with engine:
            run_id = engine.run_id or ""
            warm = engine.warm_up(world.reset(engine.seed))
            print(f"ready in {time.monotonic() - started:.1f} s (run {run_id}; warm-up "
                  f"{warm:.2f} s)", file=out, flush=True)
            continuing = ContinuingWorld(world)
            tick0 = engine.tick

            def on_tick(info: TickInfo) -> None:
                i = info.tick - tick0
                if 0 <= i < n_ticks:
                    walls[i] = info.wall_s
                    stale[i] = info.stale_agents
                if recorder is not None:
                    recorder.record(info)

            t0 = time.monotonic()
            done = 0
            samples.append(probe.take(0.0, 0, walls[:0]))
            print(format_sample(samples[-1], options.duration_s, True), file=out, flush=True)
            levels: list[int] = []
            missed = dropped = 0
            by_reason = StaleCounts()
            while done < n_ticks and engine.stop_requested is None:
                run = engine.run(continuing, options.hz, min(per_sample, n_ticks - done),
                                 on_tick=on_tick, raise_on_signal=False)
                sample = probe.take(time.monotonic() - t0, done + run.ticks,
                                    walls[done:done + run.ticks], run)
                done += run.ticks
                missed += run.missed
                dropped += run.dropped_slots
                by_reason = by_reason + run.stale_agent_ticks
                levels += [0] * (len(run.level_counts) - len(levels))
                for level, count in enumerate(run.level_counts):
                    levels[level] += count
                samples.append(sample)
                in_warmup = sample.elapsed_s < warmup - WARMUP_SLACK_S
                print(format_sample(sample, options.duration_s, in_warmup), file=out,
                      flush=True)
            signum = engine.stop_requested
            elapsed = time.monotonic() - t0
            total = {"ticks": done, "elapsed_s": elapsed, "missed": missed,
                     "dropped_slots": dropped, "level_counts": levels,
                     "stale_by_reason": by_reason.as_dict()}
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if recorder is not None:
            recorder.close(_run_summary(total, options.hz, walls, signum), error=error)
    closing = Closing(shm_left=tuple(entries_of([run_id])) if run_id else (),
                      workers_alive=probe.workers_alive(), fds_master_before=fds_before,
                      fds_master_after=probe.master.num_fds())
    failures, figures = evaluate(samples, warmup, options.max_rss_growth_pct, closing, run_id)
    assert total is not None
    quality, quality_figures = judge_quality(total["ticks"], total["missed"],
                                             int(stale[:total["ticks"]].sum()), options)
    failures += quality
    lost = [] if recorder is None else recorder.writer.lost_files()
    if lost:
        failures.append(f"tick log {options.log}: {lost[0]} was removed or replaced during the "
                        f"run")
    figures.update(quality_figures)
    ran = walls[:total["ticks"]]
    per_minute = max(1, round(60 * options.hz))
    figures.update(total)
    figures.update(
        tick_ms_p50=1e3 * float(np.median(ran)) if ran.size else None,
        tick_ms_p99=1e3 * float(np.percentile(ran, 99)) if ran.size else None,
        tick_ms_p99_per_minute=p99_per_minute(ran, per_minute),
        respawns=samples[-1].respawns if samples else 0)
    report = SoakReport(options=dataclasses.asdict(options) | {"warmup_s": warmup},
                        run_id=run_id, samples=samples, passed=not failures,
                        failures=failures, summary=figures, interrupted=signum is not None,
                        signal=None if signum is None else int(signum))
    for line in summary_lines(report):
        print(line, file=out)
    out.flush()
    return report


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker now: spawning the first worker starts it and
    it keeps a pipe open for the life of the process, which is not a leak of this run."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def _run_summary(total: dict[str, Any] | None, hz: float, walls: np.ndarray,
                 signum: int | None) -> Any:
    """The tick log footer's totals as a RunSummary (None when the run never started)."""
    if total is None or not total["ticks"]:
        return None
    import numpy as np

    from engine.runtime.engine import RunSummary
    from engine.runtime.stale import StaleCounts

    ran = walls[:total["ticks"]]
    return RunSummary(ticks=total["ticks"], hz=hz, missed=total["missed"],
                      dropped_slots=total["dropped_slots"],
                      tick_s_p50=float(np.median(ran)), tick_s_p99=float(np.percentile(ran, 99)),
                      level_counts=list(total["level_counts"]), interrupted=signum is not None,
                      stale_agent_ticks=StaleCounts.from_dict(total["stale_by_reason"]))
