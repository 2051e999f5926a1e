"""How evenly the workers share a tick: per-worker busy time against the tick's wall time.

``python -m perf.balance [--agents 100000] [--hz 10] [--ticks 150] [--workers 2]`` drives
grid-10 agents at full quality, paced at ``hz`` with no deadline (every agent every tick), and
prints p50/p99 of the tick's wall time and of each worker's busy time, the slowest ticks with
each worker's share, and the master's overhead (wall time less the busiest worker). Workers
help each other (``engine.claims``), so on a shared host the slowest ticks should show the
workers busy for about as long as each other; without helping, one worker's slow spell set the
tick's length. Writes ``perf/results/balance-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from engine import Engine, InferenceConfig
from perf.models import model_by_name
from perf.output import log, save_results
from world.process import ProcessWorld


def measure(agents: int, hz: float, ticks: int, workers: int) -> dict[str, Any]:
    """Per-tick wall and per-worker busy times (ms) of a paced full-quality run."""
    model = model_by_name("grid-10")
    with Engine(model, agents, workers=workers, config=InferenceConfig(policy_len=1),
                degrade=False) as engine:
        world = ProcessWorld(model, agents)
        engine.run(world, hz=hz, ticks=20)                 # warm-up: beliefs sharpen
        obs = world.process.observe()
        rows = []
        due = time.monotonic()
        for _ in range(ticks):
            began = time.monotonic()
            actions = engine.step(obs)
            wall = time.monotonic() - began
            rows.append([wall] + [engine.control.busy(w) for w in range(workers)])
            obs = world.step(actions)
            due += 1.0 / hz
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                due = now
    table = 1e3 * np.array(rows)
    slowest = np.argsort(table[:, 0])[-8:]
    return {"agents": agents, "hz": hz, "ticks": ticks, "workers": workers,
            "wall_ms": {"p50": float(np.median(table[:, 0])),
                        "p99": float(np.percentile(table[:, 0], 99))},
            "busy_ms": [{"p50": float(np.median(table[:, 1 + w])),
                         "p99": float(np.percentile(table[:, 1 + w], 99))}
                        for w in range(workers)],
            "slowest_ticks_ms": table[slowest].round(2).tolist(),
            "overhead_ms": {q: float(np.percentile(table[:, 0] - table[:, 1:].max(1), p))
                            for q, p in (("p50", 50), ("p99", 99))}}


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['agents']:,} agents at {result['hz']:g} Hz, {result['workers']} workers, "
             f"{result['ticks']} ticks",
             f"  tick wall  p50 {result['wall_ms']['p50']:.1f} ms  "
             f"p99 {result['wall_ms']['p99']:.1f} ms"]
    for w, busy in enumerate(result["busy_ms"]):
        lines.append(f"  worker {w} busy  p50 {busy['p50']:.1f} ms  p99 {busy['p99']:.1f} ms")
    lines.append("  slowest ticks (wall, then each worker's busy time, ms):")
    lines += ["    " + "  ".join(f"{v:6.1f}" for v in row) for row in result["slowest_ticks_ms"]]
    overhead = result["overhead_ms"]
    lines.append(f"  master overhead (wall - busiest worker)  p50 {overhead['p50']:.2f} ms  "
                 f"p99 {overhead['p99']:.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.balance", description=__doc__)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--ticks", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    log(f"{args.agents:,} agents at {args.hz:g} Hz, {args.workers} workers")
    result = measure(args.agents, args.hz, args.ticks, args.workers)
    print(report(result))
    save_results("balance", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
