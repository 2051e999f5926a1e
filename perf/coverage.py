"""How often every agent is updated under load (issue 18's target: 1,000,000 agents at 10 Hz,
every agent updated at least once every 20 ticks), measured from the engine's stale flags.

``python -m perf.coverage --agents 1000000 --hz 10 --ticks 200 --workers 2 [--json PATH]``
runs grid-world agents (policy_len 1) with ``Engine.run`` at the rate, keeps each tick's
stale flags (``engine.stale``, packed to bits) and afterwards finds, per agent, the longest run
of consecutive ticks in which it was not updated. It reports that gap's max, p99 and median
over agents, the share of agents whose longest gap reached 20 ticks (some 20 ticks in a row
without an update) and went over it, the agents updated per tick, the stale agent-ticks by
reason, misses and agent-steps/s. The rotation order is not assumed: the gaps are measured.
Ticks count from the first (an agent's wait for its first update is a gap) and a gap still
open at the end counts as measured (a lower bound of its length). ``--world static`` feeds
the grid world's first observations every tick instead of stepping the world, so the slot is
the engine's alone (the grid world's step takes a large part of a 10 Hz slot at a million
agents). Writes ``perf/results/coverage-<date>-<host>.json`` unless ``--json`` names the file.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import Engine, InferenceConfig, TickInfo
from perf.output import log, save_results
from world.registry import make_world

#: the target: every agent updated at least once in every this many consecutive ticks
TARGET_TICKS = 20


def longest_gaps(packed: np.ndarray, n_agents: int) -> np.ndarray:
    """Per agent, the longest run of consecutive ticks in which it was stale, from the ticks'
    stale flags packed to bits (``(ticks, ceil(n / 8))`` uint8, one row per tick); one
    vectorised pass per tick."""
    run = np.zeros(n_agents, dtype=np.int32)
    longest = np.zeros(n_agents, dtype=np.int32)
    for row in packed:
        stale = np.unpackbits(row, count=n_agents).view(bool)
        run += stale                       # the stale agents' runs go on
        run[~stale] = 0                    # the updated agents' runs end
        np.maximum(longest, run, out=longest)
    return longest


class StaticWorld:
    """The grid world's first observations, every tick (a world step that costs nothing)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.obs: np.ndarray | None = None

    def model(self) -> Any:
        return self.world.model()

    def reset(self, seed: int) -> np.ndarray:
        if self.obs is None:
            self.obs = self.world.reset(seed)
        return self.obs

    def step(self, actions: np.ndarray) -> np.ndarray:
        assert self.obs is not None
        return self.obs


def measure(agents: int, hz: float, ticks: int, workers: int, world_size: int = 10,
            policy_len: int = 1, seed: int = 0, world_kind: str = "grid") -> dict[str, Any]:
    """Run ``agents`` grid-world agents at ``hz`` for ``ticks`` ticks on ``workers`` worker
    processes (``world_kind`` "static": the world is not stepped); the per-agent gaps between
    updates and the run's figures."""
    grid = make_world("grid", world_size, agents)
    world = grid if world_kind == "grid" else StaticWorld(grid)
    load_before = os.getloadavg()
    packed = np.zeros((ticks, -(-agents // 8)), dtype=np.uint8)
    updated = np.zeros(ticks, dtype=np.int64)
    with Engine(world.model(), agents, workers=workers,
                config=InferenceConfig(policy_len=policy_len), seed=seed) as engine:
        warm = engine.warm_up(world.reset(engine.seed))
        first = engine.tick

        def on_tick(info: TickInfo) -> None:
            k = info.tick - first
            packed[k] = np.packbits(engine.stale)
            updated[k] = agents - info.stale_agents

        began = time.monotonic()
        summary = engine.run(world, hz, ticks, on_tick=on_tick)
        elapsed = time.monotonic() - began
        snap = engine.metrics.snapshot()
    done = summary.ticks
    gaps = longest_gaps(packed[:done], agents)
    return {
        "agents": agents, "hz": hz, "ticks": done, "workers": workers,
        "world": f"grid {world_size}" + (" (static)" if world_kind != "grid" else ""),
        "policy_len": policy_len, "warm_up_s": warm, "cpus": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "elapsed_s": elapsed,
        "gap_ticks": {"max": int(gaps.max()), "p99": float(np.percentile(gaps, 99)),
                      "median": float(np.median(gaps)), "mean": float(gaps.mean())},
        "target_ticks": TARGET_TICKS,
        "share_gap_at_least_target": float(np.mean(gaps >= TARGET_TICKS)),
        "share_gap_over_target": float(np.mean(gaps > TARGET_TICKS)),
        "never_updated": int(np.count_nonzero(gaps == done)),
        "updated_per_tick": {"min": int(updated[:done].min()),
                             "median": float(np.median(updated[:done])),
                             "max": int(updated[:done].max())},
        "stale_agent_ticks": summary.stale_agent_ticks.as_dict(),
        "stale_share": summary.stale_agent_ticks.total / max(1, done * agents),
        "missed": summary.missed, "late_slots": summary.late_slots,
        "dropped_slots": summary.dropped_slots, "level_counts": summary.level_counts,
        "tick_ms": {"p50": 1e3 * summary.tick_s_p50, "p99": 1e3 * summary.tick_s_p99},
        "agents_per_s": snap.agents_per_s,
        "peak_rss_mb_master": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(result: dict[str, Any]) -> str:
    """The figures as a few lines."""
    gap, per_tick = result["gap_ticks"], result["updated_per_tick"]
    target = result["target_ticks"]
    reasons = ", ".join(f"{k} {v:,}" for k, v in result["stale_agent_ticks"].items() if v)
    return "\n".join([
        f"{result['agents']:,} agents at {result['hz']:g} Hz, {result['workers']} workers, "
        f"{result['ticks']} ticks ({result['world']}, policy_len {result['policy_len']})",
        f"  longest run without an update per agent (ticks): max {gap['max']}, p99 "
        f"{gap['p99']:.0f}, median {gap['median']:.0f}, mean {gap['mean']:.1f}",
        f"  agents with {target}+ ticks in a row without an update: "
        f"{100 * result['share_gap_at_least_target']:.2f}% (over {target}: "
        f"{100 * result['share_gap_over_target']:.2f}%); never updated: "
        f"{result['never_updated']:,}",
        f"  updated per tick: min {per_tick['min']:,}, median {per_tick['median']:,.0f}, max "
        f"{per_tick['max']:,}; {result['agents_per_s']:,.0f} agent-steps/s",
        f"  stale agent-ticks {100 * result['stale_share']:.1f}% ({reasons or 'none'}); "
        f"missed {result['missed']}, late slots {result['late_slots']}, dropped "
        f"{result['dropped_slots']}; tick p50 {result['tick_ms']['p50']:.1f} ms, p99 "
        f"{result['tick_ms']['p99']:.1f} ms",
        f"  load average (1 min) {result['load_average_before'][0]:.1f} before, "
        f"{result['load_average_after'][0]:.1f} after, on {result['cpus']} CPUs"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.coverage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--world-size", type=int, default=10)
    parser.add_argument("--world", choices=("grid", "static"), default="grid",
                        help="static: the grid world's first observations every tick, the "
                             "world not stepped (the slot is the engine's alone)")
    parser.add_argument("--policy-len", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="where to write the figures (default perf/results/coverage-...)")
    args = parser.parse_args(argv)
    if min(args.agents, args.ticks, args.world_size, args.policy_len) < 1 or args.hz <= 0 \
            or args.workers < 0:
        parser.error("--agents, --ticks, --world-size and --policy-len must be at least 1, "
                     "--hz above 0 and --workers at least 0")
    log(f"{args.agents:,} agents at {args.hz:g} Hz for {args.ticks} ticks, {args.workers} "
        f"workers")
    result = measure(args.agents, args.hz, args.ticks, args.workers, args.world_size,
                     args.policy_len, args.seed, args.world)
    print(report(result))
    save_results("coverage", result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
