"""Cluster benchmark (issue 9): the coordinator's cost per tick against shards and population,
and a simple sizing model of ticks/s against nodes built from the measured costs.

``python -m perf.cluster [--quick] [--json PATH]`` starts a local Ray cluster of three
one-CPU nodes (``ray.cluster_utils.Cluster``: each node its own raylet and object store, so
observations and actions really cross between object stores, over loopback) and measures, for
1, 2 and 3 shards (one per node, ``workers_per_shard=0``) and 1k and 10k agents (grid-10,
policy_len 1, uint16 beliefs; 100k agents for the coordination ticks only):

* ``coord``: a tick at degradation level 4 (no agent stepped): the pure coordination cost
  (check and put the observations, one call per shard, gather the actions), and its per-shard
  ``hop`` (the call's round trip less the time the shard spent serving it);
* ``full``: a full-quality tick and the slowest shard's engine time (``overhead`` is the
  difference);
* the single-process baseline ``Engine(workers=0, threads=1)`` for the per-agent compute cost.

The model: ``tick(N nodes, n agents) = a + b * N + c * n + n * t_agent / (N * cores)``, where
``a, b, c`` are a least-squares fit of the coordination ticks, ``t_agent`` the baseline's
per-agent step time on one core, and ``cores`` the cores each node gives its shard's workers
(assumed to scale linearly). Network transfer beyond loopback is not measured: each node
receives its own agents' observations (``n / N * modalities * 8`` bytes) and returns their
actions, so add ``bytes / bandwidth`` per tick for a real network (printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import Engine, InferenceConfig
from engine.runtime.degrade import STALE_ACTIONS
from perf.output import log
from world.models import grid_model


def _obs(model: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)


def baseline(n: int, ticks: int) -> dict[str, float]:
    """In-process engine on one thread: the per-agent step time."""
    model = grid_model(10)
    rng = np.random.default_rng(0)
    with Engine(model, n, workers=0, threads=1, config=InferenceConfig(policy_len=1),
                degrade=False) as engine:
        times = []
        for k in range(ticks + 5):
            obs = _obs(model, n, rng)
            t0 = time.perf_counter()
            engine.step(obs)
            if k >= 5:
                times.append(time.perf_counter() - t0)
    p50 = float(np.median(times))
    return {"agents": n, "tick_ms_p50": 1e3 * p50, "us_per_agent": 1e6 * p50 / n}


def measure(shards: int, n: int, ticks: int, full: bool = True) -> dict[str, Any]:
    """Coordination-only and (``full``) full-quality ticks of a ``shards``-shard engine."""
    from engine.cluster.coordinator import ClusterEngine
    model = grid_model(10)
    rng = np.random.default_rng(1)
    with ClusterEngine(model, n, shards=shards, workers_per_shard=0,
                       config=InferenceConfig(policy_len=1), degrade=False,
                       checkpoint_every=0) as engine:
        observations = [_obs(model, n, rng) for _ in range(8)]
        for k in range(5):
            engine.step(observations[k % 8], level=None if full else STALE_ACTIONS)
        coord, full_ticks, shard_wall, hops = [], [], [], []
        for k in range(ticks):
            engine.step(observations[k % 8], level=STALE_ACTIONS)
            coord.append(engine.last_tick.wall_s)
            hops.extend(t.hop_s for t in engine.last_shards if t.hop_s is not None)
        for k in range(ticks if full else 0):
            engine.step(observations[k % 8])
            full_ticks.append(engine.last_tick.wall_s)
            shard_wall.append(max(t.wall_s or 0.0 for t in engine.last_shards))
        strategy = engine.placement_strategy
        nodes = len({info["node_id"] for info in engine.shard_infos()})
    return {"shards": shards, "agents": n, "nodes_used": nodes, "placement": strategy,
            "coord_ms_p50": 1e3 * float(np.median(coord)),
            "coord_ms_p99": 1e3 * float(np.percentile(coord, 99)),
            "full_ms_p50": _ms(full_ticks), "slowest_shard_ms_p50": _ms(shard_wall),
            "overhead_ms_p50": _ms(list(np.array(full_ticks) - np.array(shard_wall))),
            "hop_ms_p50": _ms(hops)}


def _ms(values: list[float]) -> float:
    return 1e3 * float(np.median(values)) if len(values) else float("nan")


def fit(rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    """``coord_s = a + b * shards + c * agents``, least squares over the measured rows."""
    X = np.array([[1.0, r["shards"], r["agents"]] for r in rows])
    y = np.array([r["coord_ms_p50"] / 1e3 for r in rows])
    (a, b, c), *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(a), float(b), float(c)


def model_table(a: float, b: float, c: float, us_per_agent: float, populations: list[int],
                nodes: list[int], cores: list[int]) -> list[dict[str, Any]]:
    """Predicted ticks/s for each population, node count and cores per node."""
    rows = []
    for n in populations:
        for k in cores:
            for N in nodes:
                compute = n * us_per_agent * 1e-6 / (N * k)
                coord = a + b * N + c * n
                rows.append({"agents": n, "cores_per_node": k, "nodes": N,
                             "coord_ms": 1e3 * coord, "compute_ms": 1e3 * compute,
                             "ticks_per_s": 1.0 / (coord + compute)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer ticks (a smoke run)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        print("perf.cluster needs Ray: pip install 'agentloop[cluster]'", file=sys.stderr)
        return 2
    ticks = 10 if args.quick else 40
    populations = [1_000, 10_000]
    log("baseline: in-process engine, one thread")
    base = [baseline(n, ticks) for n in populations]
    us_per_agent = base[-1]["us_per_agent"]
    log("starting a local Ray cluster of 3 one-CPU nodes")
    nodes = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(2):
            nodes.add_node(num_cpus=1)
        repo = str(Path(__file__).resolve().parents[1])
        ray.init(address=nodes.address, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": repo}})
        for n in populations + [100_000]:
            for shards in (1, 2, 3):
                full = n in populations
                log(f"{shards} shard(s), {n} agents{'' if full else ' (coordination only)'}")
                rows.append(measure(shards, n, ticks, full))
    finally:
        ray.shutdown()
        nodes.shutdown()
    a, b, c = fit(rows)
    table = model_table(a, b, c, us_per_agent, [100_000, 1_000_000], [1, 2, 4, 8, 16],
                        [1, 16])
    print("\nbaseline (one process, one thread, grid-10, policy_len 1):")
    for r in base:
        print(f"  {r['agents']:>7,} agents  {r['tick_ms_p50']:7.2f} ms/tick  "
              f"{r['us_per_agent']:.3f} us/agent")
    print("\ncluster ticks (local 3-node Ray cluster, one shard per node, p50):")
    print(f"  {'shards':>6} {'agents':>7} {'coord ms':>9} {'coord p99':>9} {'full ms':>8} "
          f"{'slowest shard':>13} {'overhead':>8} {'hop ms':>7}")
    for r in rows:
        print(f"  {r['shards']:>6} {r['agents']:>7,} {r['coord_ms_p50']:9.2f} "
              f"{r['coord_ms_p99']:9.2f} {r['full_ms_p50']:8.2f} "
              f"{r['slowest_shard_ms_p50']:13.2f} {r['overhead_ms_p50']:8.2f} "
              f"{r['hop_ms_p50']:7.2f}")
    print(f"\nfit: coordination per tick = {1e3 * a:.2f} ms + {1e3 * b:.2f} ms per shard + "
          f"{1e6 * c:.3f} us per agent;  compute = {us_per_agent:.3f} us per agent-step "
          f"per core")
    print("model: ticks/s = 1 / (coordination + agents * compute / (nodes * cores)); "
          "add the network: each node receives agents / nodes * modalities * 8 bytes per tick")
    print(f"  {'agents':>9} {'cores':>5} {'nodes':>5} {'coord ms':>9} {'compute ms':>10} "
          f"{'ticks/s':>8}")
    for r in table:
        print(f"  {r['agents']:>9,} {r['cores_per_node']:>5} {r['nodes']:>5} "
              f"{r['coord_ms']:9.2f} {r['compute_ms']:10.2f} {r['ticks_per_s']:8.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"baseline": base, "cluster": rows,
                       "fit": {"a_s": a, "b_s_per_shard": b, "c_s_per_agent": c,
                               "us_per_agent_step": us_per_agent},
                       "model": table}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
