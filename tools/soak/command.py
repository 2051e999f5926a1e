"""``agentloop soak`` on the command line (exit codes: 0 passed, 1 a bound was exceeded or
something leaked, 2 bad arguments, 130 SIGINT, 143 SIGTERM). Only the standard library is
imported at import time (the engine, NumPy and psutil when a soak runs)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TextIO

from tools.args import (
    byte_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    unwritable,
)
from tools.soak.options import DEFAULT_AGENTS, DEFAULT_DURATION_S, WORLD_NAMES, SoakOptions
from tools.soak.run import soak

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
EXIT_CODES = ("exit codes: 0 every bound held; 1 a bound was exceeded, something leaked or "
              "the tick log was removed while written (each failure on its own line); 2 bad "
              "command line; 130 interrupted (SIGINT, after the current tick; the report so "
              "far is printed); 143 stopped (SIGTERM)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``soak`` subcommand to ``subparsers`` (built with its ``parser_class``), with
    :func:`main_soak` as its ``handler``."""
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
                    "tick time per minute and the missed ticks, and fails when more than "
                    "--max-stale percent of agent-ticks were stale (an agent not updated in a "
                    "tick, for any reason) or more than --max-missed percent of ticks missed "
                    "their budget.",
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
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**63 - 1; "
                                                        "default 0")
    p.add_argument("--sample-every", type=positive_float, default=10.0, metavar="S",
                   help="seconds between samples (status lines); default 10")
    p.add_argument("--warmup", type=non_negative_float, default=None, metavar="S",
                   help="seconds excluded from the growth checks; default 10%% of --duration, "
                        "and at least one sample interval")
    p.add_argument("--max-rss-growth", type=non_negative_float, default=1.0, metavar="PCT",
                   help="most RSS (master + workers) may grow after the warm-up, in percent; "
                        "default 1.0")
    p.add_argument("--max-stale", type=non_negative_float, default=10.0, metavar="PCT",
                   help="most agent-ticks that may be stale (not updated in their tick), in "
                        "percent of agents x ticks; default 10")
    p.add_argument("--max-missed", type=non_negative_float, default=2.0, metavar="PCT",
                   help="most ticks that may miss their budget, in percent; default 2")
    p.add_argument("--log", default=None, metavar="PATH",
                   help="also write a tick log (as agentloop run --log) to PATH; an existing "
                        "file is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="let --log replace an existing file (never one another run is writing)")
    p.add_argument("--log-max-bytes", type=byte_size, default=None, metavar="SIZE",
                   help="with --log: rotate the tick log into files of at most SIZE bytes "
                        "(500M, 2G), as agentloop run --log-max-bytes")
    p.add_argument("--log-rotate", type=positive_int, default=None, metavar="K",
                   help="with --log-max-bytes: keep only the newest K files; default all")
    p.add_argument("--report", default=None, metavar="PATH",
                   help="write the report (samples, verdict, failures, summary) as JSON to PATH")
    p.set_defaults(handler=main_soak)


def options_from_args(args: argparse.Namespace) -> SoakOptions:
    """The :class:`SoakOptions` of parsed ``soak`` arguments."""
    return SoakOptions(world=args.world, size=args.size, agents=args.agents, hz=args.hz,
                       duration_s=args.duration, workers=args.workers,
                       policy_len=args.policy_len, seed=args.seed,
                       sample_every_s=args.sample_every, warmup_s=args.warmup,
                       max_rss_growth_pct=args.max_rss_growth,
                       max_stale_pct=args.max_stale, max_missed_pct=args.max_missed,
                       log=args.log,
                       overwrite_log=args.overwrite, log_max_bytes=args.log_max_bytes,
                       log_rotate=args.log_rotate)


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
    if problem is None and options.log is not None:
        from tools.commands.run import log_taken

        reason = log_taken(options.log, options.overwrite_log, options.log_max_bytes is not None)
        problem = f"--log {options.log}: {reason}" if reason else None
    elif problem is None and options.overwrite_log:
        problem = "--overwrite needs --log"
    if problem is None:
        from tools.commands.run import rotation_usage

        problem = rotation_usage(options.log, options.log_max_bytes, options.log_rotate)
    if problem is None:
        from tools.run import RunOptions, request_problem

        problem = request_problem(RunOptions(
            world=options.world, size=options.size, agents=options.agents, hz=options.hz,
            ticks=None, duration=options.duration_s, workers=options.workers,
            backend="numba", policy_len=options.policy_len, seed=options.seed,
            log=options.log))
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
