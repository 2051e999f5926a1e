"""``agentloop demo`` on the command line (the demo itself is :mod:`tools.demo`)."""

from __future__ import annotations

import argparse
import sys

from tools.args import EXIT_USAGE, positive_int, seed

EXIT_FAILURE = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand to ``subparsers``, with :func:`main` as its handler."""
    demo = subparsers.add_parser(
        "demo", help="agents act in the grid world, stepped in process, with a status line",
        description="Step a population of agents on the grid-N model in a simulated grid "
                    "world; print tick time and throughput.")
    demo.add_argument("--size", type=positive_int, default=10,
                      help="grid side N (the model has N*N positions); default 10")
    demo.add_argument("--agents", type=positive_int, default=10_000,
                      help="number of agents; default 10000")
    demo.add_argument("--ticks", type=positive_int, default=100,
                      help="number of ticks to run; default 100")
    demo.add_argument("--policy-len", type=positive_int, default=1,
                      help="planning horizon (policy length); default 1")
    demo.add_argument("--threads", type=positive_int, default=None,
                      help="Numba threads; default all cores")
    demo.add_argument("--seed", type=seed, default=0,
                      help="random seed, 0 to 2**63 - 1; default 0")
    demo.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Check ``--size`` and ``--threads``, then run the demo (:func:`tools.demo.run_demo`)."""
    if args.size < 2:
        print("agentloop: error: --size must be at least 2", file=sys.stderr)
        return EXIT_USAGE
    import numba

    from engine.errors import AgentloopError
    from tools.demo import run_demo

    if args.threads is not None and args.threads > numba.config.NUMBA_NUM_THREADS:
        print(f"agentloop: error: --threads must be at most "
              f"{numba.config.NUMBA_NUM_THREADS}", file=sys.stderr)
        return EXIT_USAGE
    from tools.run import RunOptions, request_problem

    problem = request_problem(RunOptions(
        world="grid", size=args.size, agents=args.agents, hz=1.0, ticks=args.ticks,
        duration=None, workers=0, backend="numba", policy_len=args.policy_len, seed=args.seed),
        in_process=True)
    if problem:
        print(f"agentloop: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_demo(args.size, args.agents, args.ticks, args.policy_len, args.threads,
                        args.seed)
    except AgentloopError as exc:
        print(f"agentloop: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("agentloop: interrupted", file=sys.stderr)
        return 130
