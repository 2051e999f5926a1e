"""``agentloop demo``: agents act in the grid world, stepped in process, with a status line."""

from __future__ import annotations

import sys
import time

import numpy as np

from engine import Agents, InferenceConfig
from world.models import grid_model, grid_resource_cell, grid_transitions


class GridSimulation:
    """True positions on the grid, moved by the agents' actions and observed through A."""

    def __init__(self, n: int, agents: int, rng: np.random.Generator) -> None:
        self.model = grid_model(n)
        self.B = grid_transitions(n)
        self.next_cell = np.argmax(self.B, axis=0)                 # (S, U) -> next cell
        self.cum = [np.cumsum(a, axis=0) for a in self.model.A]    # per-column CDFs
        self.rng = rng
        self.cells = rng.integers(0, n * n, size=agents)
        row, col = grid_resource_cell(n)
        self.resource = row * n + col

    def observe(self) -> np.ndarray:
        obs = np.empty((self.cells.shape[0], len(self.cum)), dtype=np.int64)
        for m, cdf in enumerate(self.cum):
            u = self.rng.random(self.cells.shape[0])
            obs[:, m] = np.minimum((cdf[:, self.cells] < u).sum(axis=0), cdf.shape[0] - 1)
        return obs

    def move(self, actions: np.ndarray) -> None:
        self.cells = self.next_cell[self.cells, actions[:, 0]]


def run_demo(size: int, agents: int, ticks: int, policy_len: int, threads: int | None,
             seed: int, out=sys.stdout) -> int:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    sim = GridSimulation(size, agents, rng)
    started = time.perf_counter()
    population = Agents(sim.model, agents, InferenceConfig(policy_len=policy_len), seed=seed,
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
        sim.move(actions)
        on_resource = float(np.mean(sim.cells == sim.resource))
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
          f"{np.mean(sim.cells == sim.resource):.1%} of agents on the resource", file=out)
    return 0
