"""``agentloop serve`` on the command line: its options and their checks (the work is
:mod:`tools.serve`)."""

from __future__ import annotations

import argparse
import re
import sys

from tools.args import EXIT_USAGE, non_negative_int, positive_float, positive_int, seed
from tools.commands.run import WORLD_NAMES

EXIT_FAILURE = 1
SERVE_EXIT_CODES = ("exit codes: 0 the client detached; 1 the serve failed (the client died, "
                    "a timeout, an engine error: one line on stderr); 2 bad command line; 130 "
                    "interrupted (SIGINT); 143 stopped (SIGTERM)")
#: the server names the ABI allows (``engine.serve.layout.NAME_PATTERN``; not imported: the
#: parsers import no engine)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand to ``subparsers``, with :func:`main` as its handler."""
    serve = subparsers.add_parser(
        "serve", help="serve agents to a simulator in another process (any language) over "
                      "shared memory",
        description="Own an engine and its workers and serve them to one simulator process, "
                    "written in any language, through a shared-memory region and two POSIX "
                    "semaphores (no serialisation; docs/abi.md, include/agentloop_abi.h). "
                    "Each tick the client writes observations, posts /agentloop-NAME-go and "
                    "waits on /agentloop-NAME-done, then reads actions, stale flags and tick "
                    "info from /agentloop-NAME-serve. The server prints a 'ready' line with "
                    "these names once it accepts a client, and exits when the client "
                    "detaches; a client that dies is reported on one line. The simulator "
                    "owns the clock: the server steps when asked.",
        epilog=SERVE_EXIT_CODES)
    serve.add_argument("--name", default="main",
                       help="server name (1-64 letters, digits, '_'): the region is "
                            "/agentloop-NAME-serve; default main")
    serve.add_argument("--world", default="grid", metavar="NAME",
                       help=f"world whose generative model the agents use: "
                            f"{', '.join(WORLD_NAMES)}; default grid")
    serve.add_argument("--size", type=positive_int, default=None,
                       help="world side N; default 10 for grid, 5 for foraging")
    serve.add_argument("--agents", type=positive_int, default=10_000,
                       help="number of agents; default 10000")
    serve.add_argument("--workers", type=non_negative_int, default=None,
                       help="worker processes (0: step agents in the server); default 0 below "
                            "20000 agents, else 2")
    serve.add_argument("--policy-len", type=positive_int, default=1,
                       help="planning horizon (policy length); default 1")
    serve.add_argument("--semantics", default="pymdp0", choices=("pymdp0", "pymdp1"),
                       help="pymdp0 (pymdp 0.0.7.1, default) or pymdp1 (docs/pymdp1.md)")
    serve.add_argument("--seed", type=seed, default=0,
                       help="random seed, 0 to 2**63 - 1; default 0")
    serve.add_argument("--hz", type=positive_float, default=None,
                       help="give each tick a budget of 1/hz s (agents not reached keep their "
                            "last action, flagged stale; the degradation ladder applies); "
                            "default: no budget, every agent every tick")
    serve.add_argument("--attach-timeout", type=positive_float, default=None, metavar="S",
                       help="fail if no client attaches within S seconds; default: wait")
    serve.add_argument("--client-timeout", type=positive_float, default=None, metavar="S",
                       help="fail if the attached client asks for nothing for S seconds; "
                            "default: wait while it lives")
    serve.add_argument("--include-dir", action="store_true",
                       help="print the folder holding the C header agentloop_abi.h (for a "
                            "compiler's -I) and exit")
    serve.set_defaults(handler=main)


def _usage_error(message: str) -> int:
    print(f"agentloop serve: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def main(args: argparse.Namespace) -> int:
    """Check what the parser cannot, then serve (:func:`tools.serve.serve`)."""
    if args.include_dir:
        from engine.serve import include_dir  # noqa: PLC0415

        print(include_dir())
        return 0
    if not NAME_PATTERN.fullmatch(args.name):
        return _usage_error(f"--name {args.name!r}: use 1 to 64 letters, digits or '_'")
    if args.world not in WORLD_NAMES:
        return _usage_error(f"unknown world {args.world!r}; choose from "
                            f"{', '.join(WORLD_NAMES)}")
    if args.size is not None and args.size < 2:
        return _usage_error("--size must be at least 2")
    from engine.errors import AgentloopError
    from tools.run import RunOptions, request_problem
    from tools.serve import ServeOptions, serve

    run_options = RunOptions(world=args.world, size=args.size, agents=args.agents,
                             hz=args.hz or 1.0, ticks=1, duration=None, workers=args.workers,
                             backend="numba", policy_len=args.policy_len, seed=args.seed,
                             semantics=args.semantics)
    problem = request_problem(run_options)
    if problem:
        return _usage_error(problem)
    options = ServeOptions(run_options, args.name, budget_s=None if args.hz is None
                           else 1.0 / args.hz, attach_timeout_s=args.attach_timeout,
                           client_timeout_s=args.client_timeout)
    try:
        return serve(options)
    except (AgentloopError, OSError) as exc:
        print(f"agentloop serve: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("agentloop serve: interrupted", file=sys.stderr)
        return 130
