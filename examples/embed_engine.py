"""Embed agentloop in a simulator's own loop: the simulator keeps its clock and its state and
asks agentloop for actions each tick.

First ``Agents`` steps a population in this process; then an ``Engine`` (shared memory, two
worker processes) steps it under a per-tick budget and the loop prints what each tick did.
Workers start from ``engine.runtime.worker_main``, so no ``if __name__ == "__main__":`` guard
is needed. Run: ``python examples/embed_engine.py``.
"""

import time

import numpy as np

from engine import Agents, Engine, InferenceConfig
from world.grid import GridWorld

N_AGENTS = 2_000     # try 100_000 on a machine with more cores
TICKS = 10
HZ = 10.0            # the simulator's own rate

simulator = GridWorld(size=10, n_agents=N_AGENTS, seed=0)   # stands in for your simulator
model = simulator.model()                                    # the agents' generative model

# 1. In process: no deadline, every agent is stepped every call
agents = Agents(model, n=N_AGENTS, config=InferenceConfig(policy_len=1), seed=0)
obs = simulator.reset(0)
for _ in range(3):
    actions = agents.step(obs)             # (agents, factors) action indices
    obs = simulator.step(actions)
moves = np.bincount(actions[:, 0], minlength=5)
print(f"Agents: 3 steps of {N_AGENTS} agents; last moves (stay, up, down, left, right): "
      f"{moves.tolist()}")

# 2. Engine: workers in shared memory, a budget per tick, the degradation ladder under load
period = 1.0 / HZ
with Engine(model, n_agents=N_AGENTS, workers=2, seed=0) as engine:
    obs = simulator.reset(0)
    next_tick = time.monotonic()
    for _ in range(TICKS):
        actions = engine.step(obs, budget_s=0.5 * period)   # half the period for agentloop
        obs = simulator.step(actions)                        # the simulator's own update
        info = engine.last_tick
        print(f"tick {info.tick:2d}: {info.wall_s * 1e3:6.2f} ms of a "
              f"{info.deadline_s * 1e3:.0f} ms budget, level {info.level}, "
              f"stale agents {info.stale_agents}")
        next_tick += period
        time.sleep(max(0.0, next_tick - time.monotonic()))
    print(engine.metrics.status_line())
stats = simulator.stats()
print(f"world after {stats['tick']} ticks: {stats['harvested_total']} units harvested, "
      f"mean energy {stats['mean_energy']:.1f}")
