"""``agentloop``: the command line. Bad input gets a one-line error and exit code 2.

Exit codes: 0 done; 1 the run failed (the error is printed on one line); 2 bad command line;
130 interrupted by SIGINT (Ctrl-C), 143 stopped by SIGTERM (after the current tick).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from perf.bench import cli as perf_bench
from tools import inspect_log, soak
from tools.args import non_negative_int, positive_float, positive_int, unwritable

EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 2, 1
WORLD_NAMES = ("grid", "foraging")
EXIT_CODES = ("exit codes: 0 done; 1 the run failed; 2 bad command line; "
              "130 interrupted (SIGINT); 143 stopped (SIGTERM)")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # one line, even if an argument holds newlines
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="agentloop",
        description="Run many Active Inference agents (pymdp's mathematics, compiled).",
        epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_run(sub)
    inspect_log.add_parsers(sub)
    soak.add_parsers(sub)
    perf_bench.add_parsers(sub)
    demo = sub.add_parser(
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
    demo.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    shm = sub.add_parser("shm", help="list or remove shared memory left by crashed runs",
                         description="agentloop names every segment and semaphore "
                                     "agentloop-<owner pid>x<id>-<name> in /dev/shm.")
    shm.add_argument("action", choices=("list", "clean"),
                     help="list: show agentloop runs in /dev/shm and whether their owner lives; "
                          "clean: remove those whose owner process is dead")
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="agents act in a world at a fixed tick rate, with a live status line",
        description="Run a population of agents in a world at a fixed tick rate. The world "
                    "gives the agents' generative model; small populations are stepped in "
                    "this process, large ones by worker processes over shared memory. A "
                    "status line shows tick time (p50/p99), utilisation of the tick budget, "
                    "the degradation level, missed ticks, throughput and memory.",
        epilog=EXIT_CODES)
    run.add_argument("--world", default="grid", metavar="NAME",
                     help=f"world to run: {', '.join(WORLD_NAMES)}; default grid")
    run.add_argument("--size", type=positive_int, default=None,
                     help="world side N (N x N cells); default 10 for grid, 5 for foraging")
    run.add_argument("--agents", type=positive_int, default=10_000,
                     help="number of agents; default 10000")
    run.add_argument("--hz", type=positive_float, default=10.0,
                     help="ticks per second (the tick budget is 1/hz); default 10")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--ticks", type=positive_int, default=None,
                        help="number of ticks to run")
    length.add_argument("--duration", type=positive_float, default=None, metavar="S",
                        help="seconds to run (ticks = S * hz); default 10 s when neither "
                             "--ticks nor --duration is given")
    run.add_argument("--workers", type=non_negative_int, default=None,
                     help="worker processes (0: step agents in this process); default 0 "
                          "below 20000 agents, else 2")
    run.add_argument("--backend", default="numba", choices=("numba", "cupy", "xp-numpy", "auto"),
                     help="inference kernels: numba (CPU, default), cupy (NVIDIA GPU, state "
                          "kept on the device), xp-numpy (the GPU code on the CPU, for "
                          "testing), auto (cupy when a GPU is usable, else numba)")
    run.add_argument("--xp-kernel", default="auto", choices=("auto", "array", "fused"),
                     help="the step of the cupy / xp-numpy backends: array (whole-array "
                          "operations), fused (one CUDA kernel per chunk of agents), auto "
                          "($AGENTLOOP_XP_KERNEL, else array)")
    run.add_argument("--policy-len", type=positive_int, default=1,
                     help="planning horizon (policy length); default 1")
    run.add_argument("--seed", type=int, default=0, help="random seed; default 0")
    run.add_argument("--log", default=None, metavar="PATH",
                     help="write a tick log (MCAP: header, every tick's observations, actions, "
                          "level and stale agents, belief snapshots) to PATH, for "
                          "`agentloop replay` and `agentloop inspect`")
    run.add_argument("--cluster", default=None, metavar="ADDRESS",
                     help="spread the agents over a Ray cluster: ray://host:port, host:6379, "
                          "auto, or local (starts Ray here); needs the [cluster] extra")
    run.add_argument("--shards", type=positive_int, default=None,
                     help="with --cluster: shards (one engine each); default one per node")
    run.add_argument("--snapshot-every", type=non_negative_int, default=100, metavar="K",
                     help="with --log: snapshot every agent's beliefs every K ticks (replay "
                          "--from starts there); 0 for none; default 100")
    replay = sub.add_parser(
        "replay", help="re-run a tick log and verify every recorded action",
        description="Rebuild the engine from a tick log's header, feed the recorded "
                    "observations with the recorded degradation levels and stale agents, "
                    "and check that every action matches. On the first difference, print "
                    "the desync report (tick, agent, expected and actual action, the beliefs "
                    "that led there) and exit 1.",
        epilog="exit codes: 0 every action matched; 1 replay diverged; 2 unreadable log or "
               "bad command line")
    replay.add_argument("log", metavar="LOG", help="the tick log (agentloop run --log)")
    replay.add_argument("--from", dest="from_tick", type=non_negative_int, default=None,
                        metavar="TICK", help="start at the last belief snapshot before TICK")
    replay.add_argument("--threads", type=positive_int, default=None,
                        help="Numba threads; default all cores")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name, value in vars(args).items():
        if isinstance(value, list):  # argparse (Python < 3.12) reads `--opt=--` as [], untyped
            parser.error(f"argument {name}: expected one value, got none")
    if args.command == "run":
        return _run(args)
    if args.command == "bench":
        return perf_bench.main_bench(args)
    if args.command == "soak":
        return soak.main_soak(args)
    if args.command == "inspect":
        return inspect_log.main_inspect(args)
    if args.command == "diff":
        return inspect_log.main_diff(args)
    if args.command == "replay":
        from tools.replay import main_replay
        return main_replay(args)
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


def _usage_error(message: str) -> int:
    message = " ".join(message.split())  # one line, even if a path holds newlines
    print(f"agentloop run: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    if args.world not in WORLD_NAMES:
        return _usage_error(f"unknown world {args.world!r}; choose from "
                            f"{', '.join(WORLD_NAMES)}")
    if args.size is not None and args.size < 2:
        return _usage_error("--size must be at least 2")
    if args.shards is not None and args.cluster is None:
        return _usage_error("--shards needs --cluster")
    if args.log is not None:
        problem = unwritable(args.log)
        if problem:
            return _usage_error(f"--log {args.log}: {problem}")
    if args.backend == "cupy":
        from engine.errors import ConfigError
        from engine.kernels.backends import resolve_backend
        try:
            resolve_backend("cupy")
        except ConfigError as exc:
            return _usage_error(f"--backend cupy: {exc}")
    if args.backend != "numba" and args.cluster is not None:
        return _usage_error(f"--backend {args.backend}: cluster shards run the numba backend")
    if args.xp_kernel != "auto" and args.backend == "numba":
        return _usage_error(f"--xp-kernel {args.xp_kernel}: needs --backend cupy, xp-numpy or "
                            f"auto")
    from engine.errors import AgentloopError
    from tools.run import RunOptions, run

    options = RunOptions(world=args.world, size=args.size, agents=args.agents, hz=args.hz,
                         ticks=args.ticks, duration=args.duration, workers=args.workers,
                         backend=args.backend, xp_kernel=args.xp_kernel,
                         policy_len=args.policy_len, seed=args.seed,
                         log=args.log, snapshot_every=args.snapshot_every,
                         cluster=args.cluster, shards=args.shards)
    try:
        return run(options)
    except (AgentloopError, ValueError, OSError) as exc:
        print(f"agentloop run: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("agentloop run: interrupted", file=sys.stderr)
        return 130


def _shm(action: str) -> int:
    from engine.runtime.shm import leftover_entries, run_is_alive, sweep_stale

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
