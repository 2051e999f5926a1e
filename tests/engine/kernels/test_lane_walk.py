"""The shared-tail walk in lanes (``numba/lane_walk.py``): each lane's G equals the one-agent
walk's to rounding, whatever the other lanes hold and however many run, on every stage-table
model that walks in lanes, under both pymdp generations' semantics, with degraded horizons and
either term off; and it matches the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from engine.kernels import reference as ref
from engine.kernels.numba.expected_free_energy import expected_free_energy_one
from engine.kernels.numba.lane_walk import lane_walk_views, policy_values_heads_lanes
from engine.kernels.numba.scratch import LANES, lane_views_end, layout_lane_walk_floats
from tests.engine.kernels import test_stages, test_walk_heads
from tests.engine.kernels.test_stages import TOL, _case
from world.models import random_model, tmaze_model

SEMANTICS = ("pymdp0", "pymdp1")
#: Models with a tail of uncontrolled factors, beside the stage table's.
TAIL_MODELS = [
    ("tmaze", tmaze_model),
    ("3f-two-tail-factors", lambda: random_model(np.random.default_rng(8), [3, 4, 2],
                                                 [3, 2, 2], [2, 1, 1], [[0], [1, 2], [0, 2]],
                                                 sharpness=0.3)),
    ("3f-tail-sparse-B", lambda: random_model(np.random.default_rng(9), [4, 3, 3], [6, 4, 3],
                                              [3, 2, 1], [[0], [1], [0, 2]],
                                              deterministic_B=True)),
]
CASES = [(name, build, semantics)
         for name, build in (test_stages.MODELS + TAIL_MODELS
                             + [(m[0], m[1]) for m in test_walk_heads.MODELS])
         for semantics in SEMANTICS if build().num_factors > 1]


def _lane_cases() -> list[tuple[str, object, str]]:
    return [c for c in CASES if layout_lane_walk_floats(_case(c[1], 0, c[2]).layout) > 0]


LANE_CASES = _lane_cases()


def _lane_G(case: test_stages.Case, posts: np.ndarray, kc: object) -> np.ndarray:
    """G of each row of ``posts`` from the lane walk, the unused lanes holding NaN."""
    sizes = test_stages.scratch_sizes(case.layout)
    fs = np.zeros(test_stages.scratch_float_size(case.layout))
    views = lane_walk_views(case.km, fs, lane_views_end(case.km, sizes), sizes)
    n = posts.shape[0]
    post = np.full((case.layout.state_size, LANES), np.nan)
    post[:, :n] = posts.T
    policy_values_heads_lanes(case.km, kc, post, views, sizes, n)
    assert not views[8][:, :n].any(), "the walk leaves the outcomes zeroed"
    return views[11][:, :n].T.copy()


def _one_G(case: test_stages.Case, posts: np.ndarray, kc: object) -> np.ndarray:
    views, sparse, touched = case.scratch()
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    out = []
    for post in posts:
        expected_free_energy_one(case.km, kc, post, qdepth, qj, gacc, gnode, qo, touched,
                                 sparse, G)
        out.append(G.copy())
    return np.array(out)


def _posteriors(case: test_stages.Case, n: int, concentration: float) -> np.ndarray:
    return np.stack([np.concatenate([case.rng.dirichlet(np.full(s, concentration))
                                     for s in case.model.num_states]) for _ in range(n)])


def test_the_stage_table_has_models_that_walk_in_lanes() -> None:
    assert len(LANE_CASES) >= 10, [c[0] for c in LANE_CASES]


@pytest.mark.parametrize("index", range(len(LANE_CASES)),
                         ids=[f"{c[0]}-{c[2]}" for c in LANE_CASES])
@pytest.mark.parametrize("n", [LANES, 3, 1])
@pytest.mark.parametrize("concentration", [0.5, 0.02])
def test_lanes_equal_the_one_agent_walk(index: int, n: int, concentration: float) -> None:
    name, build, semantics = LANE_CASES[index]
    case = _case(build, 11 + index, semantics)
    posts = _posteriors(case, n, concentration)
    for kc in (case.kc, case.kc._replace(max_depth=1),
               case.kc._replace(use_utility=False),
               case.kc._replace(use_states_info_gain=False)):
        np.testing.assert_allclose(_lane_G(case, posts, kc), _one_G(case, posts, kc),
                                   rtol=1e-12, atol=1e-12, err_msg=f"{name} {semantics} {kc}")


@pytest.mark.parametrize("index", range(len(LANE_CASES)),
                         ids=[f"{c[0]}-{c[2]}" for c in LANE_CASES])
def test_lanes_match_the_reference(index: int) -> None:
    name, build, semantics = LANE_CASES[index]
    case = _case(build, 5, semantics)
    qs = case.beliefs()
    posts = np.stack([case.flat(qs, i) for i in range(qs[0].shape[0])])
    want = ref.expected_free_energy(case.model, qs, case.layout.tree.policies, case.config)
    np.testing.assert_allclose(_lane_G(case, posts, case.kc), want, rtol=TOL, atol=TOL,
                               err_msg=name)
