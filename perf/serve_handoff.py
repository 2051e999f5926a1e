"""The hand-off cost of ``agentloop serve`` (issue 20's target: at most 50 us a tick plus the
copies): a server in another process whose engine does no inference, and a Python client that
times each round trip.

    python -m perf.serve_handoff --agents 100000 --ticks 2000

Printed: the round trip with 1 agent (the handshake alone: two semaphore posts and wakes, the
header's fields, the liveness bookkeeping), at ``--agents`` without and with the client's
copy of the observations (the server copies actions and stale flags into the region either
way), and the copies alone timed in one process. ``--serve NAME`` is the server's side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

from engine.runtime.tick import TickInfo
from engine.serve import ServeClient, Server

#: the grid-5 model's shape: 2 modalities (25 positions, 3 cues), 1 factor of 5 actions
NUM_OBS, NUM_CONTROLS = (25, 3), (5,)


class NoopEngine:
    """What the server needs of an engine, stepping nobody: the actions are a fixed array."""

    def __init__(self, n: int) -> None:
        self.model = SimpleNamespace(num_obs=NUM_OBS, num_controls=NUM_CONTROLS)
        self.n_agents, self.seed, self.tick = n, 0, 0
        self.last_tick: TickInfo | None = None
        self.stop_requested: int | None = None
        self.stale = np.zeros(n, dtype=np.uint8)
        self._actions = np.zeros((n, len(NUM_CONTROLS)), dtype=np.int64)

    def step(self, obs: np.ndarray, budget_s: float | None = None) -> np.ndarray:
        self.last_tick = TickInfo(self.tick, 0.0, budget_s, 0, 0)
        self.tick += 1
        return self._actions


def serve(name: str, n: int) -> int:
    """The server's side: serve a :class:`NoopEngine` of ``n`` agents until detached."""
    with Server(NoopEngine(n), name, attach_timeout_s=120) as server:
        print("ready", flush=True)
        server.serve()
    return 0


def _percentiles(seconds: list[float]) -> str:
    us = 1e6 * np.array(seconds)
    return (f"p50 {np.percentile(us, 50):6.1f} us, p99 {np.percentile(us, 99):6.1f} us, "
            f"mean {us.mean():6.1f} us")


def round_trips(n: int, ticks: int, with_obs: bool) -> list[float]:
    """``ticks`` timed round trips against a fresh no-op server of ``n`` agents."""
    name = f"handoff_{os.getpid()}_{n}_{int(with_obs)}"
    server = subprocess.Popen([sys.executable, "-m", "perf.serve_handoff", "--serve", name,
                               "--agents", str(n)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        obs = np.zeros((n, len(NUM_OBS)), dtype=np.int64)
        times = []
        with ServeClient(name, attach_timeout_s=60) as client:
            for tick in range(ticks + ticks // 10):            # the first tenth warms up
                began = time.perf_counter()
                client.step(obs if with_obs else None)
                if tick >= ticks // 10:
                    times.append(time.perf_counter() - began)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return times


def copies(n: int, repeats: int = 200) -> tuple[float, float]:
    """Seconds (median) of the client's observation copy and of the server's actions and
    stale copies, for ``n`` agents, in one process."""
    obs, obs_to = (np.zeros((n, len(NUM_OBS)), dtype=np.int64) for _ in range(2))
    actions, actions_to = (np.zeros((n, len(NUM_CONTROLS)), dtype=np.int64) for _ in range(2))
    stale, stale_to = np.zeros(n, np.uint8), np.zeros(n, np.uint8)
    inward, outward = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        np.copyto(obs_to, obs)
        middle = time.perf_counter()
        np.copyto(actions_to, actions)
        np.copyto(stale_to, stale)
        inward.append(middle - began)
        outward.append(time.perf_counter() - middle)
    return float(np.median(inward)), float(np.median(outward))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.serve_handoff",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--serve", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.agents)
    n = args.agents
    print(f"agentloop serve hand-off, no-op engine, {args.ticks} ticks each, "
          f"{os.cpu_count()} CPUs, Python client:")
    rows = (("handshake alone (1 agent)", 1, False),
            (f"{n:,} agents, server copies only", n, False),
            (f"{n:,} agents, client copies obs too", n, True))
    for label, agents, with_obs in rows:
        print(f"  {label + ':':40s} {_percentiles(round_trips(agents, args.ticks, with_obs))}")
    inward, outward = copies(n)
    print(f"  the copies alone, in one process: obs {8 * n * len(NUM_OBS) / 1e6:.1f} MB "
          f"{1e6 * inward:.0f} us; actions + stale {(8 * len(NUM_CONTROLS) + 1) * n / 1e6:.1f} "
          f"MB {1e6 * outward:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
