"""The shared-tail walk in lanes against the one-agent walk: ``python -m perf.kernels.lane_walk
MODEL:POLICY_LEN ...``. For each model and semantics whose layout walks in lanes, the walks of
the posteriors of 16 agents after some steps of their world (float64), one agent at a time
(``expected_free_energy_one``) and ``LANES`` at a time (``policy_values_heads_lanes``), alternating:
the largest difference of G and the median CPU microseconds per agent of each (one thread).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from engine import InferenceConfig
from engine.kernels.numba.expected_free_energy import expected_free_energy_one
from engine.kernels.numba.lane_walk import lane_walk_views, policy_values_heads_lanes
from engine.kernels.numba.scratch import (
    LANES,
    lane_views_end,
    layout_lane_walk_floats,
    scratch_float_size,
    scratch_int_size,
    scratch_sizes,
    scratch_views,
    sparse_views,
)
from engine.kernels.numba.step import kernel_config, kernel_model
from engine.model.layout import layout_of
from perf.bench.config import STEP_PARAMS
from perf.kernels.walk import SEMANTICS, _posteriors
from perf.models import model_by_name


@njit(_nrt=False, error_model="numpy")
def _lanes(km, kc, posts, post, G_out, fs, sizes, reps):
    views = lane_walk_views(km, fs, lane_views_end(km, sizes), sizes)
    s_tot = km.state_offset[-1]
    for _ in range(reps):
        for g in range(0, posts.shape[0], LANES):
            n = min(LANES, posts.shape[0] - g)
            for ln in range(n):
                for s in range(s_tot):
                    post[s, ln] = posts[g + ln, s]
            policy_values_heads_lanes(km, kc, post, views, sizes, n)
            for ln in range(n):
                for p in range(G_out.shape[1]):
                    G_out[g + ln, p] = views[11][p, ln]


@njit(error_model="numpy")
def _one_by_one(km, kc, posts, G_out, fs, its, sizes, reps):
    views = scratch_views(fs, sizes)
    sparse = sparse_views(km, fs, its, sizes)
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    for _ in range(reps):
        for i in range(posts.shape[0]):
            expected_free_energy_one(km, kc, posts[i], qdepth, qj, gacc, gnode, qo, its,
                                     sparse, G)
            for p in range(G.shape[0]):
                G_out[i, p] = G[p]


def compare(name: str, policy_len: int, semantics: str) -> str:
    """One line: the largest difference of G and us per agent of each way."""
    config = InferenceConfig(policy_len=policy_len, dtype="float64",
                             **{**STEP_PARAMS, "semantics": semantics})
    layout = layout_of(model_by_name(name), config)
    if layout_lane_walk_floats(layout) == 0:
        return f"{name:16s} L{policy_len} {semantics}: walks one agent at a time"
    km, kc, sizes = kernel_model(layout), kernel_config(config), scratch_sizes(layout)
    posts = _posteriors(name, policy_len, semantics)
    fs = np.zeros(scratch_float_size(layout))
    its = np.zeros(scratch_int_size(layout), dtype=np.int64)
    post = np.zeros((layout.state_size, LANES))
    lanes = np.zeros((posts.shape[0], layout.n_policies))
    single = np.zeros_like(lanes)
    _lanes(km, kc, posts, post, lanes, fs, sizes, 1)
    _one_by_one(km, kc, posts, single, fs, its, sizes, 1)
    t0 = time.process_time()
    _one_by_one(km, kc, posts, single, fs, its, sizes, 1)
    reps = max(1, int(0.1 / max(time.process_time() - t0, 1e-6)))
    times: dict[str, list[float]] = {"lanes": [], "one": []}
    for _ in range(5):
        t0 = time.process_time()
        _lanes(km, kc, posts, post, lanes, fs, sizes, reps)
        t1 = time.process_time()
        _one_by_one(km, kc, posts, single, fs, its, sizes, reps)
        t2 = time.process_time()
        times["lanes"].append(t1 - t0)
        times["one"].append(t2 - t1)
    per = 1e6 / (reps * posts.shape[0])
    one, lane = (float(np.median(times[k])) * per for k in ("one", "lanes"))
    diff = float(np.max(np.abs(lanes - single)))
    return (f"{name:16s} L{policy_len} {semantics}: max |dG| {diff:.1e}; one by one {one:7.3f} "
            f"us, lanes {lane:7.3f} us per agent ({one / lane:.2f}x)")


def main(argv: list[str]) -> int:
    for case in argv:
        name, policy_len = case.split(":")
        for semantics in SEMANTICS:
            print(compare(name, int(policy_len), semantics), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
