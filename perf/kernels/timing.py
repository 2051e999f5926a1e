"""Timed agent steps: one agent's step latency and a population's throughput, and the load
other processes put on the machine meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import Agents, GenerativeModel, InferenceConfig
from perf.kernels.plan import Plan
from world.process import ModelProcess


class OtherLoad:
    """CPU used by *other* processes while a measurement ran, in cores (0 = machine was ours).

    System-wide busy CPU time minus this process's own, over the wall time: on a shared machine
    a figure taken while another process held a core (``> 0.3`` or so) is not comparable,
    especially a 2-thread one.
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._psutil = psutil

    def _sample(self) -> tuple[float, float, float]:
        t = self._psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = self._proc.cpu_times()
        return time.perf_counter(), busy, own.user + own.system

    def __enter__(self) -> OtherLoad:
        self._start = self._sample()
        self.cores = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        wall = max(end[0] - self._start[0], 1e-9)
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        self.cores = max(0.0, others / wall)


def summary(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()),
            "p90": float(np.percentile(arr, 90)), "count": int(arr.size)}


# ------------------------------------------------------------------------------------ latency
StepFn = Callable[[np.ndarray], np.ndarray]


def timed_steps(step: StepFn, world: ModelProcess, steps: int, budget_s: float,
                 min_steps: int) -> tuple[list[float], float]:
    """Time ``steps`` calls of ``step`` (stopping early past the budget); first call untimed."""
    obs = world.observe()
    t0 = time.perf_counter()
    world.advance(step(obs))
    first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    for i in range(steps):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = step(obs)
        times.append(time.perf_counter() - t0)
        world.advance(actions)
        if i + 1 >= min_steps and time.perf_counter() - start > budget_s:
            break
    return times, first


def pymdp_step_fn(model: GenerativeModel, policy_len: int) -> StepFn:
    agent = model.to_pymdp(InferenceConfig(policy_len=policy_len, dtype="float64"))

    def step(obs: np.ndarray) -> np.ndarray:
        agent.infer_states([int(o) for o in obs[0]])
        agent.infer_policies()
        action = agent.sample_action()
        return np.asarray(action).astype(np.int64).reshape(1, -1)

    return step


def measure_latency(model: GenerativeModel, policy_len: int, impl: str, plan: Plan,
                    rng: np.random.Generator) -> dict[str, Any]:
    """One agent's step latency for ``impl`` in ``numba``, ``reference``, ``pymdp``."""
    target = plan.latency_steps
    if impl == "pymdp":
        step = pymdp_step_fn(model, policy_len)
        if policy_len >= 3:
            target = min(target, plan.pymdp_long_policy_steps)
    else:
        agents = Agents(model, 1, InferenceConfig(policy_len=policy_len), seed=plan.seed,
                        threads=1, backend=impl)  # type: ignore[arg-type]
        step = agents.step
    world = ModelProcess(model, 1, rng)
    times, first = timed_steps(step, world, target, plan.latency_budget_s,
                               plan.latency_min_steps)
    s = summary(times)
    return {"impl": impl, "target_steps": target, "steps": s["count"],
            "median_us": s["median"] * 1e6, "min_us": s["min"] * 1e6,
            "max_us": s["max"] * 1e6, "p90_us": s["p90"] * 1e6, "first_step_ms": first * 1e3}


# ------------------------------------------------------------------------------------ throughput
def measure_throughput(model: GenerativeModel, policy_len: int, n: int, threads: int,
                       plan: Plan, rng: np.random.Generator) -> tuple[dict[str, Any], Agents]:
    """Agent-steps/s of ``n`` Numba float32 agents on ``threads`` threads (and the agents)."""
    agents = Agents(model, n, InferenceConfig(policy_len=policy_len), seed=plan.seed,
                    threads=threads)
    world = ModelProcess(model, n, rng)
    warm: list[float] = []
    for _ in range(max(1, plan.warmup_steps)):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = agents.step(obs)
        warm.append(time.perf_counter() - t0)
        world.advance(actions)
    est = max(min(warm), 1e-7)
    timed = max(plan.timed_steps, min(1000, int(plan.min_timed_seconds / est)))
    times: list[float] = []
    for _ in range(timed):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = agents.step(obs)
        times.append(time.perf_counter() - t0)
        world.advance(actions)
    s = summary(times)
    row = {"n": n, "threads": threads, "warmup_steps": len(warm), "timed_steps": s["count"],
           "step_s_median": s["median"], "step_s_min": s["min"], "step_s_max": s["max"],
           "steps_per_s_median": n / s["median"], "steps_per_s_min": n / s["max"],
           "steps_per_s_max": n / s["min"]}
    return row, agents


