"""``agentloop demo``: agents act in the grid world, stepped in process, with a status line."""

from __future__ import annotations

import sys
import time

import numpy as np

from engine import Agents, InferenceConfig
from world.models import grid_model, grid_resource_cell
from world.process import ModelProcess


def run_demo(size: int, agents: int, ticks: int, policy_len: int, threads: int | None,
             seed: int, out=sys.stdout) -> int:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    model = grid_model(size)
    sim = ModelProcess(model, agents, rng)
    row, col = grid_resource_cell(size)
    resource = row * size + col
    started = time.perf_counter()
    population = Agents(model, agents, InferenceConfig(policy_len=policy_len), seed=seed,
                        threads=threads)
    population.step(sim.observe())          # compiles (or loads the cache) and warms up
    ready = time.perf_counter() - started
    print(f"agentloop demo: {agents} agents on grid-{size}, policy_len {policy_len}; "
          f"ready in {ready:.2f} s", file=out)
    interactive = out.isatty()
    times = []
    for tick in range(ticks):
        obs = sim.observe()
        t0 = time.perf_counter()
        actions = population.step(obs)
        times.append(time.perf_counter() - t0)
        sim.advance(actions)
        on_resource = float(np.mean(sim.state[:, 0] == resource))
        line = (f"tick {tick + 1:5d}  step {1e3 * times[-1]:8.2f} ms  "
                f"p50 {1e3 * np.median(times):8.2f} ms  "
                f"{agents / times[-1]:12,.0f} agent-steps/s  on resource {on_resource:6.1%}")
        if interactive:
            print("\r" + line, end="", file=out, flush=True)
        elif tick == ticks - 1 or tick % max(1, ticks // 10) == 0:
            print(line, file=out, flush=True)
    if interactive:
        print(file=out)
    arr = np.array(times)
    print(f"summary: {ticks} ticks, step p50 {1e3 * np.median(arr):.2f} ms, "
          f"p99 {1e3 * np.percentile(arr, 99):.2f} ms, "
          f"{agents * ticks / arr.sum():,.0f} agent-steps/s, "
          f"{np.mean(sim.state[:, 0] == resource):.1%} of agents on the resource", file=out)
    return 0
