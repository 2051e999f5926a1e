"""Agent-steps per second per core of zoo models: ``Agents`` on one thread, timed in CPU time
(less sensitive to other jobs on a shared machine than wall time), for comparing two
checkouts of the kernels one after the other.

    python -m perf.per_core dense-grid-10:1:1000 grid-10:3:100

Each argument is ``MODEL:POLICY_LEN:AGENTS``; every agent gets the same random observation
each step, float32 state, gamma = alpha = 16, median of 7 steps after 2 warm-up steps.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from engine import Agents, InferenceConfig
from engine.model.layout import layout_of
from perf.models import model_by_name


def per_core_rate(name: str, policy_len: int, n_agents: int, steps: int = 7) -> float:
    """Median agent-steps per CPU second of ``n_agents`` agents of model ``name``."""
    model = model_by_name(name)
    config = InferenceConfig(policy_len=policy_len, dtype="float32", gamma=16.0, alpha=16.0)
    agents = Agents(model, n_agents, config=config, seed=1, threads=1)
    rng = np.random.default_rng(0)

    def observation() -> np.ndarray:
        return np.tile([rng.integers(o) for o in model.num_obs], (n_agents, 1))

    agents.step(observation())
    agents.step(observation())
    times = []
    for _ in range(steps):
        obs = observation()
        start = time.process_time()
        agents.step(obs)
        times.append(time.process_time() - start)
    return n_agents / float(np.median(times))


def main(argv: list[str]) -> int:
    for spec in argv:
        name, policy_len, n_agents = spec.split(":")
        rate = per_core_rate(name, int(policy_len), int(n_agents))
        layout = layout_of(model_by_name(name), InferenceConfig(policy_len=int(policy_len)))
        path = getattr(layout, "gain_path", "scatter")
        print(f"{name:16s} policy_len {policy_len} {int(n_agents):>6,} agents: "
              f"{rate:>10,.0f} agent-steps/s per core [{path}]", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
