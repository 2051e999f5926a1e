"""State inference in lanes (``numba/lane_inference.py``): each lane equals the one-agent
kernel (``infer_states_factors``) bit for bit, whatever the other lanes hold and however
many run, on every multi-factor model of the stage table under both pymdp generations'
semantics; and it matches the NumPy reference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine import GenerativeModel
from engine.kernels import reference as ref
from engine.kernels.numba.lane_inference import VALID, infer_states_lanes
from engine.kernels.numba.scratch import LANES, lane_views
from engine.kernels.numba.state_inference import infer_states_factors
from tests.engine.kernels import test_stages
from tests.engine.kernels.test_stages import TOL, _case

MODELS: list[tuple[str, Callable[[], GenerativeModel]]] = [
    (name, build) for name, build in test_stages.MODELS if build().num_factors > 1]


def _inputs(case: test_stages.Case, n: int, concentration: float
            ) -> tuple[np.ndarray, np.ndarray]:
    obs = np.stack([case.rng.integers(0, o, size=n) for o in case.model.num_obs],
                   axis=1).astype(np.int64)
    priors = np.stack([np.concatenate([case.rng.dirichlet(np.full(s, concentration))
                                       for s in case.model.num_states]) for _ in range(n)])
    return obs, priors


def _lanes(case: test_stages.Case, obs: np.ndarray, priors: np.ndarray, valid: np.ndarray,
           num_iter: int) -> np.ndarray:
    fs = np.zeros(test_stages.scratch_float_size(case.layout))
    sizes = test_stages.scratch_sizes(case.layout)
    views = lane_views(case.km, fs, sizes)
    n = obs.shape[0]
    views[0][:, :n] = priors.T
    views[7][VALID, :n] = valid
    views[7][VALID, n:] = 0.0
    infer_states_lanes(case.km, case.kc, case.km.A_flat, obs, 0, n, views, num_iter)
    return views[1][:, :n].T.copy()


def _one_agent(case: test_stages.Case, obs: np.ndarray, priors: np.ndarray,
               num_iter: int) -> np.ndarray:
    views, _, _ = case.scratch()
    _, post, lnprior, qL, qtmp, lnL, qj = views[:7]
    out = []
    for i in range(obs.shape[0]):
        infer_states_factors(case.km, case.kc, case.km.A_flat, obs[i], priors[i].copy(), post,
                             lnprior, qL, qtmp, lnL, qj, num_iter)
        out.append(post.copy())
    return np.array(out)


@pytest.mark.parametrize("semantics", ["pymdp0", "pymdp1"])
@pytest.mark.parametrize("index", range(len(MODELS)), ids=[m[0] for m in MODELS])
def test_each_lane_equals_the_one_agent_kernel_bit_for_bit(index: int, semantics: str) -> None:
    case = _case(MODELS[index][1], seed=4000 + index, semantics=semantics)
    for n, concentration, num_iter in [(LANES, 0.5, 16), (3, 0.05, 16), (1, 2.0, 16),
                                       (LANES, 0.5, 1), (5, 0.5, 0)]:
        obs, priors = _inputs(case, n, concentration)
        want = _one_agent(case, obs, priors, num_iter)
        got = _lanes(case, obs, priors, np.ones(n), num_iter)
        np.testing.assert_array_equal(got, want, err_msg=f"n={n}, num_iter={num_iter}")


@pytest.mark.parametrize("semantics", ["pymdp0", "pymdp1"])
def test_a_lane_does_not_depend_on_its_neighbours(semantics: str) -> None:
    """The same agent gives the same posterior beside other agents, beside idle lanes and
    alone (pymdp 0.0.7.1's lanes stop sweeping at different times)."""
    case = _case(dict(MODELS)["3f-subsets"], seed=4100, semantics=semantics)
    obs, priors = _inputs(case, LANES, 0.3)
    together = _lanes(case, obs, priors, np.ones(LANES), 16)
    valid = np.ones(LANES)
    valid[::2] = 0.0
    with_idle = _lanes(case, obs, priors, valid, 16)
    for i in range(LANES):
        alone = _lanes(case, obs[i:i + 1], priors[i:i + 1], np.ones(1), 16)
        np.testing.assert_array_equal(alone[0], together[i])
        if valid[i]:
            np.testing.assert_array_equal(with_idle[i], together[i])


@pytest.mark.parametrize("semantics", ["pymdp0", "pymdp1"])
@pytest.mark.parametrize("index", range(len(MODELS)), ids=[m[0] for m in MODELS])
def test_lanes_match_the_reference(index: int, semantics: str) -> None:
    case = _case(MODELS[index][1], seed=4200 + index, semantics=semantics)
    obs, priors = _inputs(case, LANES, 0.5)
    got = _lanes(case, obs, priors, np.ones(LANES), case.config.num_iter)
    offsets = case.layout.state_offset
    prior = [priors[:, offsets[f]:offsets[f + 1]] for f in range(case.model.num_factors)]
    cfg = case.config
    want = ref.infer_states(case.model, obs, prior, cfg.num_iter, cfg.dF, cfg.dF_tol,
                            cfg.semantics)
    np.testing.assert_allclose(got, np.concatenate(want, axis=1), rtol=TOL, atol=TOL)
