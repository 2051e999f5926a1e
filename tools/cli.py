"""``agentloop``: the command line. Bad input gets a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 2, 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentloop",
        description="Run many Active Inference agents (pymdp's mathematics, compiled).")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="agents act in the grid world, stepped in process, with a status line",
        description="Step a population of agents on the grid-N model in a simulated grid "
                    "world; print tick time and throughput.")
    demo.add_argument("--size", type=_positive_int, default=10,
                      help="grid side N (the model has N*N positions); default 10")
    demo.add_argument("--agents", type=_positive_int, default=10_000,
                      help="number of agents; default 10000")
    demo.add_argument("--ticks", type=_positive_int, default=100,
                      help="number of ticks to run; default 100")
    demo.add_argument("--policy-len", type=_positive_int, default=1,
                      help="planning horizon (policy length); default 1")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="Numba threads; default all cores")
    demo.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    shm = sub.add_parser("shm", help="list or remove shared memory left by crashed runs",
                         description="agentloop names every segment and semaphore "
                                     "agentloop-<owner pid>x<id>-<name> in /dev/shm.")
    shm.add_argument("action", choices=("list", "clean"),
                     help="list: show agentloop runs in /dev/shm and whether their owner lives; "
                          "clean: remove those whose owner process is dead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "shm":
        return _shm(args.action)
    return EXIT_USAGE


def _demo(args: argparse.Namespace) -> int:
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
    try:
        return run_demo(args.size, args.agents, args.ticks, args.policy_len, args.threads,
                        args.seed)
    except AgentloopError as exc:
        print(f"agentloop: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("agentloop: interrupted", file=sys.stderr)
        return 130


def _shm(action: str) -> int:
    from engine.shm import leftover_entries, run_is_alive, sweep_stale

    if action == "clean":
        removed = sweep_stale()
        print(f"removed {len(removed)} stale shared-memory entries"
              + (": " + ", ".join(removed) if removed else ""))
        return EXIT_OK
    runs = leftover_entries()
    if not runs:
        print("no agentloop shared memory in /dev/shm")
    for run_id, entries in sorted(runs.items()):
        state = "live" if run_is_alive(run_id) else "stale (owner dead)"
        print(f"run {run_id}: {len(entries)} entries, {state}")
    return EXIT_OK
