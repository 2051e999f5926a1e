"""``agentloop run`` on the command line: its options, their checks, and the run."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from tools.args import (
    EXIT_CODES,
    EXIT_USAGE,
    byte_size,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    seed,
    unwritable,
)

if TYPE_CHECKING:
    from tools.run import RunOptions

EXIT_FAILURE = 1
WORLD_NAMES = ("grid", "foraging")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand to ``subparsers``, with :func:`main_run` as its handler."""
    run = subparsers.add_parser(
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
    run.add_argument("--semantics", default="pymdp0", choices=("pymdp0", "pymdp1"),
                     help="whose numbers the agents reproduce: pymdp0 (pymdp 0.0.7.1, "
                          "default) or pymdp1 (pymdp 1.x: information gain per modality, C "
                          "as given, 1.x's defaults); docs/pymdp1.md")
    run.add_argument("--learn", default=None, choices=("A", "B", "AB"),
                     help="agents learn their likelihood A, their transitions B, or both "
                          "(Dirichlet counts per agent, pymdp's update_A / update_B; priors "
                          "like the world's model, concentration 1); the status line shows "
                          "how far they have moved; docs/learning.md")
    run.add_argument("--seed", type=seed, default=0,
                     help="random seed, 0 to 2**63 - 1; default 0")
    run.add_argument("--log", default=None, metavar="PATH",
                     help="write a tick log (MCAP: header, every tick's observations, actions, "
                          "level and stale agents, belief snapshots) to PATH, for "
                          "`agentloop replay` and `agentloop inspect`; an existing PATH is "
                          "refused unless --overwrite")
    run.add_argument("--overwrite", action="store_true",
                     help="with --log: replace PATH if it exists (never one another run is "
                          "writing), and the later files of a rotated set there")
    run.add_argument("--log-max-bytes", type=byte_size, default=None, metavar="SIZE",
                     help="with --log: end a file before it grows past SIZE bytes (500M, 2G: "
                          "K, M, G, T are powers of 1024) and go on in PATH's next file "
                          "(run.mcap, run.001.mcap, run.002.mcap, ...), each a whole log "
                          "that starts with the agents' state; replay and inspect read the "
                          "set as one log; default: one file, no cap")
    run.add_argument("--log-rotate", type=positive_int, default=None, metavar="K",
                     help="with --log-max-bytes: keep only the newest K files, removing the "
                          "oldest (replay starts at the first one left); default: keep all")
    run.add_argument("--visual", action="store_true",
                     help="with --log: also log the world's cells (agents per cell, and the "
                          "world's own layers) as a foxglove.Grid on /world/grid and its "
                          "figures as JSON numbers on /world/stats, so that the log opens in "
                          "Foxglove as a picture; docs/ticklog.md")
    run.add_argument("--visual-every", type=positive_int, default=None, metavar="K",
                     help="with --visual: a picture every K ticks; default 1 (every tick)")
    run.add_argument("--status-json", default=None, metavar="PATH",
                     help="also write the status line's figures to PATH as one JSON object "
                          "per line, once a second and at the end (tick, p50/p99 of the engine "
                          "step, missed, level, stale agents, agent-steps/s, RSS, the world's "
                          "counts)")
    run.add_argument("--metrics-port", type=port, default=None, metavar="PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics while the run "
                          "lasts (tick-time histogram, ticks, missed ticks, late and dropped "
                          "slots, level, stale agents, agent-steps, RSS per process, worker "
                          "respawns); 0 picks a free port, shown at the start; "
                          "docs/observability.md")
    run.add_argument("--metrics-host", default=None, metavar="HOST",
                     help="with --metrics-port: the address to listen on; default 127.0.0.1 "
                          "(this machine only; 0.0.0.0 for every interface)")
    run.add_argument("--cluster", default=None, metavar="ADDRESS",
                     help="spread the agents over a Ray cluster: ray://host:port, host:6379, "
                          "auto, or local (starts Ray here); needs the [cluster] extra")
    run.add_argument("--shards", type=positive_int, default=None,
                     help="with --cluster: shards (one engine each); default one per node")
    run.add_argument("--snapshot-every", type=non_negative_int, default=100, metavar="K",
                     help="with --log: snapshot every agent's beliefs every K ticks (replay "
                          "--from starts there); 0 for none; default 100")
    run.set_defaults(handler=main_run)


def _usage_error(message: str) -> int:
    message = " ".join(message.split())  # one line, even if a path holds newlines
    print(f"agentloop run: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def log_taken(path: str, overwrite: bool, rotating: bool = False) -> str | None:
    """Why the tick log at ``path`` must not be written (None when it may): another run is
    writing it (or, ``rotating``, any file of a set there), or it exists (or a later file of
    a set there) and ``overwrite`` is false. The writer checks again itself."""
    from engine.ticklog.files import later_members, log_in_use, set_in_use

    if set_in_use(path) if rotating else log_in_use(path):
        return "in use by another writer"
    if not overwrite and os.path.lexists(path):
        return "already exists; pass --overwrite to replace it"
    later = later_members(path) if rotating and not overwrite else []
    if later:
        return (f"{later[0]} (a later file of a rotated log there) already exists; pass "
                f"--overwrite to replace the set")
    return None


def rotation_usage(log: str | None, max_bytes: int | None, rotate: int | None) -> str | None:
    """What is wrong with ``--log-max-bytes`` and ``--log-rotate`` given ``--log`` (None when
    nothing)."""
    if max_bytes is not None and log is None:
        return "--log-max-bytes needs --log"
    if rotate is not None and max_bytes is None:
        return "--log-rotate needs --log-max-bytes (when to start the next file)"
    return None


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _warnings(options: RunOptions) -> list[str]:
    from tools.run import run_warnings

    return run_warnings(options, _cores())


def main_run(args: argparse.Namespace) -> int:
    """Check the options ``run`` cannot check alone, then run (:func:`tools.run.run`)."""
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
        problem = log_taken(args.log, args.overwrite, args.log_max_bytes is not None)
        if problem:
            return _usage_error(f"--log {args.log}: {problem}")
    elif args.overwrite:
        return _usage_error("--overwrite needs --log")
    if args.status_json is not None:
        problem = unwritable(args.status_json)
        if problem:
            return _usage_error(f"--status-json {args.status_json}: {problem}")
    if args.metrics_host is not None:
        if args.metrics_port is None:
            return _usage_error("--metrics-host needs --metrics-port")
        if not args.metrics_host.strip():
            return _usage_error("--metrics-host: expected an address such as 127.0.0.1, got "
                                "an empty one")
    if args.visual and args.log is None:
        return _usage_error("--visual needs --log")
    if args.visual_every is not None and not args.visual:
        return _usage_error("--visual-every needs --visual")
    problem = rotation_usage(args.log, args.log_max_bytes, args.log_rotate)
    if problem:
        return _usage_error(problem)
    if args.backend == "cupy":
        from engine.errors import ConfigError
        from engine.kernels.backends import resolve_backend
        try:
            resolve_backend("cupy")
        except ConfigError as exc:
            return _usage_error(f"--backend cupy: {exc}")
    if args.learn and (args.backend not in ("numba", "auto") or args.cluster is not None):
        return _usage_error("--learn: learning populations run on the CPU workers (backend "
                            "numba, no cluster)")
    if args.backend != "numba" and args.cluster is not None:
        return _usage_error(f"--backend {args.backend}: cluster shards run the numba backend")
    if args.xp_kernel != "auto" and args.backend == "numba":
        return _usage_error(f"--xp-kernel {args.xp_kernel}: needs --backend cupy, xp-numpy or "
                            f"auto")
    from engine.errors import AgentloopError
    from tools.run import RunOptions, request_problem, run

    options = RunOptions(world=args.world, size=args.size, agents=args.agents, hz=args.hz,
                         ticks=args.ticks, duration=args.duration, workers=args.workers,
                         backend=args.backend, xp_kernel=args.xp_kernel,
                         policy_len=args.policy_len, seed=args.seed,
                         log=args.log, snapshot_every=args.snapshot_every,
                         overwrite=args.overwrite, log_max_bytes=args.log_max_bytes,
                         log_rotate=args.log_rotate, visual=args.visual,
                         visual_every=args.visual_every or 1,
                         cluster=args.cluster, shards=args.shards,
                         semantics=args.semantics, learn=args.learn or "",
                         status_json=args.status_json, metrics_port=args.metrics_port,
                         metrics_host=args.metrics_host or "127.0.0.1")
    problem = request_problem(options)
    if problem:
        return _usage_error(problem)
    for warning in _warnings(options):
        print(f"agentloop run: warning: {warning}", file=sys.stderr)
    try:
        return run(options)
    except (AgentloopError, ValueError, OSError) as exc:
        print(f"agentloop run: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("agentloop run: interrupted", file=sys.stderr)
        return 130
