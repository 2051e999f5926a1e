"""``agentloop soak``: a headless long run that watches memory, file descriptors and /dev/shm.

:func:`soak` builds a world and an :class:`~engine.Engine` as ``agentloop run`` does, drives
them at a fixed rate for ``duration_s`` and, every ``sample_every_s``, records a
:class:`Sample`: RSS of the master and of each worker process, their open file descriptors,
this run's ``/dev/shm`` entries (count and bytes) and the free space there, the engine's tick
time (p50/p99 of :attr:`TickInfo.wall_s` over the interval), missed ticks, degradation levels
and worker respawns. It prints one status line per sample.

Sampling costs the loop nothing: the run is driven as consecutive :meth:`Engine.run` calls of
one sample interval each (the world is reset only once; see :class:`_ContinuingWorld`), and a
sample is taken after a segment's last slot has ended, before the next segment's first tick.
The per-tick bookkeeping is one store into an array allocated (and touched) before the run.

After the warm-up (``warmup_s``, default 10% of the duration and at least one sample
interval) the run must hold these bounds, checked by :func:`evaluate`:

* total RSS (master + workers) of the last sample at most ``max_rss_growth_pct`` above the
  first sample after the warm-up;
* no more open file descriptors (master + workers) at the end than after the warm-up;
* this run's ``/dev/shm`` entries, count and bytes, the same at every sample;
* after the engine closed: no ``/dev/shm`` entry of this run left, no worker process alive, and
  the master's open file descriptors back to their number before the engine started (the tick
  log, if any, closed too).

:class:`SoakReport` holds the samples, the verdict, one sentence per failure (naming the
bound and the measured value) and the summary figures (RSS at the end of the warm-up and at
the end, growth, fds, shm, p99 tick time per minute, missed ticks); ``to_json()`` gives it as
JSON. :func:`add_parsers` / :func:`main_soak` are the command line (exit codes: 0 passed,
1 a bound was exceeded or something leaked, 2 bad arguments, 130 SIGINT, 143 SIGTERM).

Only the standard library is imported at module import time (the engine, NumPy and psutil
when a soak runs), so building the ``agentloop`` command line stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from tools.args import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    unwritable,
)

if TYPE_CHECKING:
    import numpy as np
    import psutil

    from engine import Engine
    from world.base import World

__all__ = [
    "DEFAULT_AGENTS", "DEFAULT_DURATION_S", "EXIT_FAILED", "EXIT_PASSED", "EXIT_SIGINT",
    "EXIT_SIGTERM", "EXIT_USAGE", "Closing", "Sample", "SoakOptions", "SoakReport",
    "add_parsers", "evaluate", "format_sample", "main_soak", "soak",
]

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
WORLD_NAMES = ("grid", "foraging")
DEFAULT_DURATION_S = 3600.0
DEFAULT_AGENTS = 100_000
#: a sample at most this much before the end of the warm-up counts as after it (float slack)
_WARMUP_SLACK_S = 1e-3
_MB = float(2**20)


# ----------------------------------------------------------------------------- options
@dataclasses.dataclass(frozen=True)
class SoakOptions:
    """What a soak runs and the bounds it checks (see the module docstring)."""

    world: str = "grid"
    size: int | None = None
    agents: int = DEFAULT_AGENTS
    hz: float = 10.0
    duration_s: float = DEFAULT_DURATION_S
    workers: int = 2
    policy_len: int = 1
    seed: int = 0
    sample_every_s: float = 10.0
    warmup_s: float | None = None
    max_rss_growth_pct: float = 1.0
    log: str | None = None
    snapshot_every: int = 100

    @property
    def n_ticks(self) -> int:
        """Ticks in the whole run (``duration_s * hz``, at least 1)."""
        return max(1, math.ceil(self.duration_s * self.hz - 1e-9))

    @property
    def ticks_per_sample(self) -> int:
        """Ticks between two samples (``sample_every_s * hz``, at least 1)."""
        return max(1, round(self.sample_every_s * self.hz))

    @property
    def warmup(self) -> float:
        """The warm-up in seconds: ``warmup_s``, or 10% of the duration and at least one
        sample interval."""
        if self.warmup_s is not None:
            return self.warmup_s
        return max(0.1 * self.duration_s, self.sample_every_s)

    @property
    def world_size(self) -> int:
        """The world's side: ``size``, or the world's default (5 foraging, 10 grid)."""
        if self.size is not None:
            return self.size
        return 5 if self.world == "foraging" else 10

    def problem(self) -> str | None:
        """Why these options cannot run (one sentence), or None."""
        finite = (self.hz, self.duration_s, self.sample_every_s, self.max_rss_growth_pct)
        if self.world not in WORLD_NAMES:
            return f"unknown world {self.world!r}; choose from {', '.join(WORLD_NAMES)}"
        if self.size is not None and self.size < 2:
            return f"--size must be at least 2, got {self.size}"
        if self.agents < 1:
            return f"--agents must be at least 1, got {self.agents}"
        if self.workers < 0:
            return f"--workers must be 0 or more, got {self.workers}"
        if self.policy_len < 1:
            return f"--policy-len must be at least 1, got {self.policy_len}"
        if self.seed < 0:
            return f"--seed must be 0 or more, got {self.seed}"
        if not all(math.isfinite(v) for v in finite):
            return "--hz, --duration, --sample-every and --max-rss-growth must be finite"
        if self.hz <= 0 or self.duration_s <= 0 or self.sample_every_s <= 0:
            return "--hz, --duration and --sample-every must be above 0"
        if self.max_rss_growth_pct < 0:
            return f"--max-rss-growth must be 0 or more, got {self.max_rss_growth_pct:g}"
        if self.warmup_s is not None and not (math.isfinite(self.warmup_s)
                                              and self.warmup_s >= 0):
            return f"--warmup must be a finite number of seconds >= 0, got {self.warmup_s:g}"
        per = self.ticks_per_sample
        first_after = per * max(1, math.ceil(self.warmup * self.hz / per - 1e-9))
        if self.n_ticks <= first_after:
            return (f"--duration {self.duration_s:g} leaves no sample after the warm-up "
                    f"to compare with: the first sample after a {self.warmup:g} s warm-up is "
                    f"at {first_after / self.hz:g} s, so the run must be longer than that")
        return None


# ----------------------------------------------------------------------------- samples
@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the run, taken between two ticks. Bytes are bytes; times in the interval
    since the previous sample (``None`` for the first sample, taken before the first tick)."""

    elapsed_s: float
    ticks: int
    rss_master: int
    rss_workers: tuple[int, ...]
    fds_master: int
    fds_workers: tuple[int, ...]
    shm_entries: int
    shm_bytes: int
    shm_free: int
    tick_ms_p50: float | None = None
    tick_ms_p99: float | None = None
    missed: int = 0
    dropped_slots: int = 0
    level_counts: tuple[int, ...] = ()
    respawns: int = 0

    @property
    def rss_total(self) -> int:
        """RSS of the master plus every worker, in bytes."""
        return self.rss_master + sum(self.rss_workers)

    @property
    def fds_total(self) -> int:
        """Open file descriptors of the master plus every worker."""
        return self.fds_master + sum(self.fds_workers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, totals included."""
        out = dataclasses.asdict(self)
        out["rss_total"] = self.rss_total
        out["fds_total"] = self.fds_total
        return out


@dataclasses.dataclass(frozen=True)
class Closing:
    """What is left once the engine (and the tick log) closed."""

    shm_left: tuple[str, ...]
    workers_alive: tuple[int, ...]
    fds_master_before: int
    fds_master_after: int


@dataclasses.dataclass
class SoakReport:
    """A soak's samples, verdict, failures (one sentence each) and summary figures."""

    options: dict[str, Any]
    run_id: str
    samples: list[Sample]
    passed: bool
    failures: list[str]
    summary: dict[str, Any]
    interrupted: bool = False
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (samples with their totals)."""
        return {"passed": self.passed, "failures": list(self.failures),
                "interrupted": self.interrupted, "signal": self.signal,
                "run_id": self.run_id, "options": dict(self.options),
                "summary": dict(self.summary),
                "samples": [s.to_dict() for s in self.samples]}

    def to_json(self) -> bytes:
        """The report as indented JSON (orjson)."""
        import orjson

        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2
                            | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


# ----------------------------------------------------------------------------- verdict
def reference_index(samples: Sequence[Sample], warmup_s: float) -> int | None:
    """Index of the first sample after the warm-up (never the first sample, which is taken
    before the first tick), or None when no sample is past the warm-up."""
    for i, sample in enumerate(samples):
        if i >= 1 and sample.elapsed_s >= warmup_s - _WARMUP_SLACK_S:
            return i
    return None


def _mb(n: float) -> str:
    return f"{n / _MB:.1f} MB"


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
                f"master + workers {_mb(ref.rss_total)} at {ref.elapsed_s:.0f} s, "
                f"{_mb(last.rss_total)} at {last.elapsed_s:.0f} s (master "
                f"{_mb(ref.rss_master)} -> {_mb(last.rss_master)})")
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


# ----------------------------------------------------------------------------- sampling
class _ContinuingWorld:
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


class _Probe:
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


def format_sample(sample: Sample, duration_s: float, warmup: bool) -> str:
    """One status line: time, ticks, RSS, fds, /dev/shm, tick time, misses, levels."""
    workers = ", ".join(f"{r / _MB:.0f}" for r in sample.rss_workers)
    rss = f"RSS {sample.rss_total / _MB:7.1f} MB (master {sample.rss_master / _MB:.0f}"
    rss += f" + workers {workers})" if workers else ")"
    timing = ("tick p50 -       p99 -      " if sample.tick_ms_p50 is None else
              f"tick p50 {sample.tick_ms_p50:6.2f} p99 {sample.tick_ms_p99:6.2f} ms")
    levels = ",".join(f"{k}:{v}" for k, v in enumerate(sample.level_counts) if v) or "-"
    return (f"soak {sample.elapsed_s:7.1f}/{duration_s:g} s  tick {sample.ticks:7d}  {rss}  "
            f"fds {sample.fds_total}  shm {sample.shm_entries} entries "
            f"{sample.shm_bytes / _MB:.1f} MB (free {sample.shm_free / 2**30:.1f} GB)  "
            f"{timing}  missed {sample.missed}  levels {levels}  respawns {sample.respawns}"
            f"{'  [warm-up]' if warmup else ''}")


def _p99_per_minute(walls: np.ndarray, ticks_per_minute: int) -> list[float]:
    import numpy as np

    return [1e3 * float(np.percentile(walls[i:i + ticks_per_minute], 99))
            for i in range(0, walls.size, ticks_per_minute)]


# ----------------------------------------------------------------------------- the soak
def soak(options: SoakOptions, out: TextIO = sys.stdout) -> SoakReport:
    """Run the soak ``options`` describe, printing a status line per sample to ``out``.

    SIGINT or SIGTERM (once the engine has started) ends the run after the current tick; the
    report then covers the samples so far (``interrupted``, ``signal``). Raises ValueError
    for options :meth:`SoakOptions.problem` rejects, and lets the engine's errors through
    (the engine and the tick log are closed first).
    """
    problem = options.problem()
    if problem:
        raise ValueError(problem)
    import numpy as np

    from engine import Engine, InferenceConfig, TickInfo
    from engine.runtime.shm import entries_of
    from engine.ticklog.recorder import TickRecorder
    from world.registry import make_world

    world = make_world(options.world, options.world_size, options.agents)
    n_ticks, per_sample, warmup = options.n_ticks, options.ticks_per_sample, options.warmup
    print(f"agentloop soak: {options.agents:,} agents in the {options.world} world (size "
          f"{options.world_size}), policy_len {options.policy_len}, {options.workers or 'no'} "
          f"worker process{'' if options.workers == 1 else 'es'}, {options.duration_s:g} s at "
          f"{options.hz:g} Hz ({n_ticks} ticks); a sample every {options.sample_every_s:g} s, "
          f"warm-up {warmup:g} s, RSS growth bound {options.max_rss_growth_pct:g}%", file=out)
    print("starting (the first run on a machine compiles the kernels, about 30-90 s) ...",
          file=out, flush=True)
    started = time.monotonic()
    engine = Engine(world.model(), options.agents, workers=options.workers,
                    config=InferenceConfig(policy_len=options.policy_len), seed=options.seed)
    _start_resource_tracker()
    probe = _Probe(engine)
    fds_before = probe.master.num_fds()
    walls = np.full(n_ticks, np.nan)          # touched now: no RSS growth from bookkeeping
    samples: list[Sample] = []
    recorder = None
    run_id, signum, error, total = "", None, None, None
    try:
        if options.log:
            recorder = TickRecorder(engine, options.log, hz=options.hz,
                                    world=world.config(), snapshot_every=options.snapshot_every,
                                    extra={"soak": True})
        with engine:
            run_id = engine.run_id or ""
            print(f"ready in {time.monotonic() - started:.1f} s (run {run_id})", file=out,
                  flush=True)
            continuing = _ContinuingWorld(world)
            tick0 = engine.tick

            def on_tick(info: TickInfo) -> None:
                i = info.tick - tick0
                if 0 <= i < n_ticks:
                    walls[i] = info.wall_s
                if recorder is not None:
                    recorder.record(info)

            t0 = time.monotonic()
            done = 0
            samples.append(probe.take(0.0, 0, walls[:0]))
            print(format_sample(samples[-1], options.duration_s, True), file=out, flush=True)
            levels: list[int] = []
            missed = dropped = 0
            while done < n_ticks and engine.stop_requested is None:
                run = engine.run(continuing, options.hz, min(per_sample, n_ticks - done),
                                 on_tick=on_tick, raise_on_signal=False)
                sample = probe.take(time.monotonic() - t0, done + run.ticks,
                                    walls[done:done + run.ticks], run)
                done += run.ticks
                missed += run.missed
                dropped += run.dropped_slots
                levels += [0] * (len(run.level_counts) - len(levels))
                for level, count in enumerate(run.level_counts):
                    levels[level] += count
                samples.append(sample)
                in_warmup = sample.elapsed_s < warmup - _WARMUP_SLACK_S
                print(format_sample(sample, options.duration_s, in_warmup), file=out,
                      flush=True)
            signum = engine.stop_requested
            elapsed = time.monotonic() - t0
            total = {"ticks": done, "elapsed_s": elapsed, "missed": missed,
                     "dropped_slots": dropped, "level_counts": levels}
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
    ran = walls[:total["ticks"]]
    per_minute = max(1, round(60 * options.hz))
    figures.update(total)
    figures.update(
        tick_ms_p50=1e3 * float(np.median(ran)) if ran.size else None,
        tick_ms_p99=1e3 * float(np.percentile(ran, 99)) if ran.size else None,
        tick_ms_p99_per_minute=_p99_per_minute(ran, per_minute),
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

    ran = walls[:total["ticks"]]
    return RunSummary(ticks=total["ticks"], hz=hz, missed=total["missed"],
                      dropped_slots=total["dropped_slots"],
                      tick_s_p50=float(np.median(ran)), tick_s_p99=float(np.percentile(ran, 99)),
                      level_counts=list(total["level_counts"]), interrupted=signum is not None)


def summary_lines(report: SoakReport) -> list[str]:
    """The closing lines: RSS, fds, /dev/shm, tick time per minute, misses (no verdict)."""
    s = report.summary
    lines = [f"summary: {s.get('ticks', 0)} ticks in {s.get('elapsed_s', 0.0):.1f} s"
             f"{' (interrupted)' if report.interrupted else ''}; missed {s.get('missed', 0)}, "
             f"dropped slots {s.get('dropped_slots', 0)}; levels "
             + (", ".join(f"{k}:{v}" for k, v in enumerate(s.get("level_counts", [])) if v)
                or "-") + f"; respawns {s.get('respawns', 0)}"]
    if "rss_warmup_end" in s:
        growth = (f"{s['rss_growth_pct']:+.2f}%" if s.get("growth_checked")
                  else "not judged (no sample after the warm-up's)")
        lines.append(f"RSS (master + workers): {_mb(s['rss_warmup_end'])} at the end of the "
                     f"warm-up ({s['warmup_end_s']:.0f} s), {_mb(s['rss_end'])} at the end: "
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


# ----------------------------------------------------------------------------- command line
EXIT_CODES = ("exit codes: 0 every bound held; 1 a bound was exceeded or something leaked "
              "(each failure on its own line); 2 bad command line; 130 interrupted (SIGINT, "
              "after the current tick; the report so far is printed); 143 stopped (SIGTERM)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``soak`` subcommand to ``subparsers`` (built with its ``parser_class``);
    dispatch ``args.command == "soak"`` to :func:`main_soak`."""
    p = subparsers.add_parser(
        "soak", help="a long headless run that fails if memory grows or anything leaks",
        description="Run a population of agents in a world at a fixed tick rate, without a "
                    "display, and every --sample-every seconds print one line: RSS of the "
                    "master and of each worker process, open file descriptors, this run's "
                    "/dev/shm entries and bytes (and the free space there), tick time p50/p99 "
                    "over the interval, missed ticks, degradation levels and worker respawns. "
                    "After the warm-up (--warmup) it checks: total RSS grows at most "
                    "--max-rss-growth percent (last sample against the first after the "
                    "warm-up); open file descriptors do not grow; this run's /dev/shm entries "
                    "stay the same. After the engine closes: no /dev/shm entry of the run is "
                    "left, no worker process is alive, and the master's open file descriptors "
                    "are back to their number before the engine started. It also reports p99 "
                    "tick time per minute and the missed ticks.",
        epilog=EXIT_CODES)
    p.add_argument("--duration", type=positive_float, default=DEFAULT_DURATION_S,
                   metavar="S", help="seconds to run; default 3600")
    p.add_argument("--agents", type=positive_int, default=DEFAULT_AGENTS,
                   help="number of agents; default 100000")
    p.add_argument("--hz", type=positive_float, default=10.0,
                   help="ticks per second (the tick budget is 1/hz); default 10")
    p.add_argument("--world", default="grid", metavar="NAME",
                   help=f"world to run: {', '.join(WORLD_NAMES)}; default grid")
    p.add_argument("--size", type=positive_int, default=None,
                   help="world side N (N x N cells); default 10 for grid, 5 for foraging")
    p.add_argument("--workers", type=non_negative_int, default=2,
                   help="worker processes (0: step agents in this process); default 2")
    p.add_argument("--policy-len", type=positive_int, default=1,
                   help="planning horizon (policy length); default 1")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed; default 0")
    p.add_argument("--sample-every", type=positive_float, default=10.0, metavar="S",
                   help="seconds between samples (status lines); default 10")
    p.add_argument("--warmup", type=non_negative_float, default=None, metavar="S",
                   help="seconds excluded from the growth checks; default 10%% of --duration, "
                        "and at least one sample interval")
    p.add_argument("--max-rss-growth", type=non_negative_float, default=1.0, metavar="PCT",
                   help="most RSS (master + workers) may grow after the warm-up, in percent; "
                        "default 1.0")
    p.add_argument("--log", default=None, metavar="PATH",
                   help="also write a tick log (as agentloop run --log) to PATH")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="write the report (samples, verdict, failures, summary) as JSON to PATH")


def options_from_args(args: argparse.Namespace) -> SoakOptions:
    """The :class:`SoakOptions` of parsed ``soak`` arguments."""
    return SoakOptions(world=args.world, size=args.size, agents=args.agents, hz=args.hz,
                       duration_s=args.duration, workers=args.workers,
                       policy_len=args.policy_len, seed=args.seed,
                       sample_every_s=args.sample_every, warmup_s=args.warmup,
                       max_rss_growth_pct=args.max_rss_growth, log=args.log)


def _error(message: object) -> None:
    print(f"agentloop soak: error: {' '.join(str(message).split())}", file=sys.stderr)


def main_soak(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``agentloop soak``: 0 passed, 1 a bound exceeded or a leak (each failure on its
    own line), 2 bad arguments (one line on stderr), 130 SIGINT, 143 SIGTERM."""
    out = out or sys.stdout
    options = options_from_args(args)
    problem = options.problem()
    for flag, path in (("--log", options.log), ("--report", getattr(args, "report", None))):
        if problem is None and path is not None:
            reason = unwritable(path)
            problem = f"{flag} {path}: {reason}" if reason else None
    if problem:
        _error(problem)
        return EXIT_USAGE
    from engine.errors import AgentloopError

    try:
        report = soak(options, out)
    except KeyboardInterrupt:            # before the engine's own handler was installed
        _error("interrupted (SIGINT) before the run started")
        return EXIT_SIGINT
    except (AgentloopError, ValueError, OSError) as exc:
        _error(exc)
        return EXIT_FAILED
    if getattr(args, "report", None):
        try:
            with open(args.report, "wb") as f:
                f.write(report.to_json())
            print(f"report: {args.report}", file=out)
        except OSError as exc:
            _error(f"cannot write --report {args.report}: {exc.strerror or exc}")
            return EXIT_FAILED
    for failure in report.failures:
        print(f"FAILED: {failure}", file=out)
    if report.signal is not None:
        try:
            name = signal.Signals(report.signal).name
        except ValueError:
            name = f"signal {report.signal}"
        print(f"agentloop soak: interrupted ({name}) after the current tick; the report covers "
              f"{len(report.samples)} samples", file=sys.stderr)
        if report.signal == signal.SIGINT:
            return EXIT_SIGINT
        return EXIT_SIGTERM if report.signal == signal.SIGTERM else 128 + report.signal
    if report.passed:
        print("soak passed: every bound held", file=out)
        return EXIT_PASSED
    print(f"soak FAILED: {len(report.failures)} bound"
          f"{'' if len(report.failures) == 1 else 's'} exceeded", file=out)
    return EXIT_FAILED
