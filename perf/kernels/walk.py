"""Where the expected-free-energy walk's time goes: ``python -m perf.kernels.walk
MODEL:POLICY_LEN ...``; with ``--rates MODEL:POLICY_LEN:AGENTS ...``, whole steps'
agent-steps per CPU second instead (``Agents`` on one thread, the bench's step settings,
observations from the model's world, median of 9 steps after 3), for both semantics.

The walk is timed on the posteriors of a few agents after some steps of their world (float64),
in a compiled parallel loop on one thread, as the step runs it: the whole stage, the stage
without the information gain, without gain and utility (predictions and joint beliefs), and
the predictions alone. Prints CPU microseconds per walk (one agent's stage).
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np
from numba import njit, prange

from engine.kernels.numba.expected_free_energy import expected_free_energy_one
from engine.kernels.numba.scratch import scratch_views, sparse_views
from engine.kernels.numba.stages import predict_states

N_AGENTS = 32
SEMANTICS = ("pymdp0", "pymdp1")


@njit(parallel=True)
def _walks(km, kc, posts, reps, fs, touched, sizes):
    total = 0.0
    for rep in prange(reps):  # noqa: B007
        views = scratch_views(fs, sizes)            # made in the body, as the step makes them
        sparse = sparse_views(km, fs, touched, sizes)
        _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
        for i in range(posts.shape[0]):
            expected_free_energy_one(km, kc, posts[i], qdepth, qj, gacc, gnode, qo, touched,
                                     sparse, G)
            total += G[0]
    return total


@njit(parallel=True)
def _predictions(km, posts, reps, qdepth):
    s_tot = km.state_offset[-1]
    total = 0.0
    for _ in prange(reps):
        for i in range(posts.shape[0]):
            for k in range(km.node_depth.shape[0]):
                d = km.node_depth[k]
                if d == 0:
                    predict_states(km, km.node_action[k], posts[i], 0, qdepth, 0)
                else:
                    predict_states(km, km.node_action[k], qdepth, (d - 1) * s_tot, qdepth,
                                   d * s_tot)
            total += qdepth[0]
    return total


def _posteriors(name: str, policy_len: int, semantics: str) -> np.ndarray:
    from engine import Agents, InferenceConfig
    from perf.bench.config import STEP_PARAMS
    from perf.models import model_by_name
    from world.process import ModelProcess

    model = model_by_name(name)
    config = InferenceConfig(policy_len=policy_len, dtype="float64",
                             **{**STEP_PARAMS, "semantics": semantics})
    agents = Agents(model, N_AGENTS, config, seed=0, threads=1)
    world = ModelProcess(model, N_AGENTS, np.random.default_rng(0))
    for _ in range(4):
        world.advance(agents.step(world.observe()))
    return np.ascontiguousarray(np.concatenate(agents.qs, axis=1))


def walk_split(name: str, policy_len: int, semantics: str, seconds: float = 0.5
               ) -> dict[str, float]:
    """Median microseconds per walk of each variant (5 alternating repeats)."""
    from engine import InferenceConfig
    from engine.kernels.numba.scratch import scratch_float_size, scratch_int_size, scratch_sizes
    from engine.kernels.numba.step import kernel_config, kernel_model
    from engine.model.layout import layout_of
    from perf.bench.config import STEP_PARAMS
    from perf.models import model_by_name

    config = InferenceConfig(policy_len=policy_len, dtype="float64",
                             **{**STEP_PARAMS, "semantics": semantics})
    layout = layout_of(model_by_name(name), config)
    km = kernel_model(layout)
    sizes = scratch_sizes(layout)
    fs = np.zeros(scratch_float_size(layout))
    its = np.zeros(scratch_int_size(layout), dtype=np.int64)
    qdepth = scratch_views(fs, sizes)[7]
    posts = _posteriors(name, policy_len, semantics)
    kc = kernel_config(config)
    runs = {"walk": lambda r: _walks(km, kc, posts, r, fs, its, sizes),
            "no gain": lambda r: _walks(km, kc._replace(use_states_info_gain=False), posts, r,
                                        fs, its, sizes),
            "no gain, no utility": lambda r: _walks(
                km, kc._replace(use_states_info_gain=False, use_utility=False), posts, r,
                fs, its, sizes),
            "predictions": lambda r: _predictions(km, posts, r, qdepth)}
    reps = {}
    for key, fn in runs.items():
        fn(1)
        t0 = time.process_time()
        fn(1)
        one = max(time.process_time() - t0, 1e-6)
        reps[key] = max(1, int(seconds / 5 / one))
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(5):
        for key, fn in runs.items():
            t0 = time.process_time()
            fn(reps[key])
            times[key].append((time.process_time() - t0) / (reps[key] * N_AGENTS))
    return {key: 1e6 * float(np.median(v)) for key, v in times.items()}


def step_rate(name: str, policy_len: int, n: int, semantics: str, steps: int = 9) -> float:
    """Median agent-steps per CPU second of ``n`` agents stepping on one thread."""
    from engine import Agents, InferenceConfig
    from perf.bench.config import STEP_PARAMS
    from perf.models import model_by_name
    from world.process import ModelProcess

    model = model_by_name(name)
    config = InferenceConfig(policy_len=policy_len, **{**STEP_PARAMS, "semantics": semantics})
    agents = Agents(model, n, config, seed=0, threads=1)
    world = ModelProcess(model, n, np.random.default_rng(0))
    times = []
    for i in range(3 + steps):
        obs = world.observe()
        t0 = time.process_time()
        actions = agents.step(obs)
        if i >= 3:
            times.append(time.process_time() - t0)
        world.advance(actions)
    return n / float(np.median(times))


def main(argv: list[str]) -> int:
    numba.set_num_threads(1)          # the loops share one thread's scratch
    if argv and argv[0] == "--rates":
        for case in argv[1:]:
            name, policy_len, n = case.split(":")
            rates = [step_rate(name, int(policy_len), int(n), sem) for sem in SEMANTICS]
            print(f"{name:16s} L{policy_len} {int(n):>6,} agents: "
                  + "  ".join(f"{sem} {r:>9,.0f}" for sem, r in zip(SEMANTICS, rates, strict=True))
                  + " agent-steps/s per core", flush=True)
        return 0
    for case in argv:
        name, policy_len = case.split(":")
        for semantics in SEMANTICS:
            us = walk_split(name, int(policy_len), semantics)
            walk, no_gain = us["walk"], us["no gain"]
            bare, pred = us["no gain, no utility"], us["predictions"]
            print(f"{name:16s} L{policy_len} {semantics}: walk {walk:9.2f} us = gain "
                  f"{walk - no_gain:8.2f} + utility {no_gain - bare:7.2f} + joint "
                  f"{bare - pred:7.2f} + predictions {pred:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
