"""The fixed-point sweeps in lanes against the one-agent kernel: ``python -m perf.kernels.lanes
MODEL ...``. For each model and semantics, 203 agents' state inference (random observations and
priors, 10 sweeps, float64) through ``infer_states_factors`` one agent at a time and through
``infer_states_lanes`` ``LANES`` at a time: whether the posteriors are the same bits, and CPU
microseconds per agent of each (one thread).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from engine import Agents, InferenceConfig
from engine.kernels.numba.lane_inference import VALID, infer_states_lanes
from engine.kernels.numba.scratch import LANES, lane_views
from engine.kernels.numba.state_inference import infer_states_factors
from perf.models import model_by_name

N_AGENTS = 203


@njit(_nrt=False, error_model="numpy")
def _lanes(km, kc, obs, priors, posts, fs, sizes, num_iter, reps):
    views = lane_views(km, fs, sizes)
    s_tot = km.state_offset[-1]
    for _ in range(reps):
        for g in range(0, obs.shape[0], LANES):
            n = min(LANES, obs.shape[0] - g)
            for ln in range(n):
                views[7][VALID, ln] = 1.0
                for s in range(s_tot):
                    views[0][s, ln] = priors[g + ln, s]
            infer_states_lanes(km, kc, km.A_flat, obs, g, n, views, num_iter)
            for ln in range(n):
                for s in range(s_tot):
                    posts[g + ln, s] = views[1][s, ln]


@njit(_nrt=False, error_model="numpy")
def _one_by_one(km, kc, obs, priors, posts, scratch, n_joint, num_iter, reps):
    s_tot = km.state_offset[-1]
    for _ in range(reps):
        for i in range(obs.shape[0]):
            infer_states_factors(km, kc, km.A_flat, obs[i], priors[i], posts[i],
                                 scratch[0, :s_tot], scratch[1, :s_tot], scratch[2, :s_tot],
                                 scratch[3, :n_joint], scratch[4], num_iter)


def compare(name: str, semantics: str) -> str:
    """One line: same bits or not, and us per agent of each way."""
    model = model_by_name(name)
    agents = Agents(model, 1, config=InferenceConfig(policy_len=1, semantics=semantics,
                                                     num_iter=10), seed=1)
    km, kc, sizes = agents._km, agents._kc, agents._sizes
    rng = np.random.default_rng(0)
    s_tot = int(km.state_offset[-1])
    obs = np.stack([rng.integers(o, size=N_AGENTS) for o in model.num_obs], 1).astype(np.int64)
    priors = np.empty((N_AGENTS, s_tot))
    for f in range(len(km.num_states)):
        p = rng.random((N_AGENTS, km.num_states[f])) ** 3
        priors[:, km.state_offset[f]:km.state_offset[f + 1]] = p / p.sum(1, keepdims=True)
    fs = np.zeros(agents._fscratch.shape[1])
    lanes, single = np.zeros((N_AGENTS, s_tot)), np.zeros((N_AGENTS, s_tot))
    n_joint = int(np.prod(km.num_states))
    scratch = np.zeros((5, max(n_joint, s_tot)))
    _lanes(km, kc, obs, priors, lanes, fs, sizes, 10, 1)
    _one_by_one(km, kc, obs, priors, single, scratch, n_joint, 10, 1)
    reps = max(1, 20000 // N_AGENTS)
    t0 = time.process_time()
    _lanes(km, kc, obs, priors, lanes, fs, sizes, 10, reps)
    t1 = time.process_time()
    _one_by_one(km, kc, obs, priors, single, scratch, n_joint, 10, reps)
    t2 = time.process_time()
    per = 1e6 / (reps * N_AGENTS)
    return (f"{name:16s} {semantics}: same bits {np.array_equal(lanes, single)}; one by one "
            f"{(t2 - t1) * per:7.3f} us, lanes {(t1 - t0) * per:7.3f} us per agent")


def main(argv: list[str]) -> int:
    for name in argv:
        for semantics in ("pymdp0", "pymdp1"):
            print(compare(name, semantics), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
