"""``agentloop inspect LOG`` and ``agentloop diff A B`` on the command line.

Exit codes: 0 ok, 1 the logs differ (diff only), 2 a bad or foreign file or a bad argument
(one line on stderr, never a traceback). Only the standard library is imported at import time
(numpy, the tick log reader and matplotlib when a command runs).
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import TickLogError
from tools.inspect.diff import diff_logs, format_difference
from tools.inspect.plot import PLOT_MISSING, check_plot_path, draw, import_pyplot
from tools.inspect.scan import scan_ticks
from tools.inspect.summary import summary_of
from tools.inspect.text import format_summary

EXIT_OK, EXIT_DIFFER, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` and ``diff`` subcommands to ``subparsers`` (built with its
    ``parser_class``), with :func:`main_inspect` / :func:`main_diff` as their ``handler``."""
    exit_codes = "exit codes: 0 done; 2 not a readable tick log, or a bad argument"
    inspect = subparsers.add_parser(
        "inspect", help="summarize a tick log: ticks, tick time, degradation, actions",
        description="Summarize a tick log written by 'agentloop run' (an MCAP file, or a "
                    "set of them rotated by --log-max-bytes, read as one log): header "
                    "(agents, rate, world, engine version), whether the file is complete or "
                    "was cut off by a crash, ticks and gaps, the tick time distribution "
                    "against the budget 1/hz, the degradation timeline (ticks at each level "
                    "and runs of ticks at non-zero levels), stale agents, a histogram of the "
                    "actions of each control factor and the number of belief snapshots. The "
                    "log is streamed: memory does not grow with its length.",
        epilog=exit_codes)
    inspect.add_argument("log", metavar="LOG", help="tick log (.mcap) to summarize")
    inspect.add_argument("--plot", metavar="PATH", default=None,
                         help="also draw tick time, level and the share of each action "
                              "over ticks, the tick-time distribution and, for grid worlds, "
                              "where the agents were (heatmap) into PATH (format from the "
                              "extension, e.g. out.png; needs matplotlib)")
    inspect.add_argument("--json", action="store_true",
                         help="print the summary as JSON instead of text")
    inspect.set_defaults(handler=main_inspect)
    diff = subparsers.add_parser(
        "diff", help="compare two tick logs; name the first tick where they differ",
        description="Stream two tick logs in step and name the first difference: a header "
                    "field that decides the run (agents, seed, model hash, config, world), a "
                    "tick missing from one log, or a tick's observations, level, stale "
                    "agents or actions (with the first differing agent and both values). "
                    "Wall times, tick durations and timings are expected to differ and are "
                    "ignored, as are belief snapshots.",
        epilog="exit codes: 0 the logs agree; 1 they differ; 2 not a readable tick log")
    diff.add_argument("a", metavar="A", help="first tick log")
    diff.add_argument("b", metavar="B", help="second tick log")
    diff.set_defaults(handler=main_diff)


def _error(command: str, message: object) -> int:
    text = " ".join(str(message).split())
    print(f"agentloop {command}: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def main_inspect(args: argparse.Namespace) -> int:
    """Run ``agentloop inspect``: print the summary of ``args.log`` (text, or JSON with
    ``args.json``), draw ``args.plot`` if given. Returns 0, or 2 with one line on stderr."""

    plot = getattr(args, "plot", None)
    plt = None
    if plot is not None:
        try:
            plt = import_pyplot()
        except ImportError:
            return _error("inspect", PLOT_MISSING)
        problem = check_plot_path(plot)
        if problem is not None:
            return _error("inspect", problem)
    try:
        from engine.ticklog.logset import open_log

        with open_log(args.log) as reader:
            scan = scan_ticks(reader, occupancy=plot is not None)
            summary = summary_of(reader, scan)
    except TickLogError as exc:
        return _error("inspect", exc)
    except OSError as exc:
        return _error("inspect", f"cannot read {args.log!r}: {exc.strerror or exc}")
    if plot is not None:
        try:
            draw(plt, plot, summary, scan)
        except (OSError, ValueError) as exc:
            return _error("inspect", f"cannot write --plot {plot!r}: "
                                     f"{getattr(exc, 'strerror', None) or exc}")
    if getattr(args, "json", False):
        out = dict(summary)
        if plot is not None:
            out["plot"] = plot
        print(json.dumps(out, indent=2, default=str))
    else:
        print(format_summary(summary))
        if plot is not None:
            print(f"{'plot':<11}{plot}")
    return EXIT_OK


def main_diff(args: argparse.Namespace) -> int:
    """Run ``agentloop diff``: 0 when ``args.a`` and ``args.b`` agree (prints "logs agree on
    N ticks"), 1 when they differ (prints the first difference), 2 for a bad file."""

    try:
        found, agreed, truncated = diff_logs(args.a, args.b)
    except TickLogError as exc:
        return _error("diff", exc)
    except OSError as exc:
        return _error("diff", f"{exc.strerror or exc}")
    if found is None:
        cut = [name.upper() for name, t in truncated.items() if t]
        note = f" ({' and '.join(cut)} truncated)" if cut else ""
        print(f"logs agree on {agreed} ticks{note}")
        return EXIT_OK
    print(format_difference(found))
    return EXIT_DIFFER
