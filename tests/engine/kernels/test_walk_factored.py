"""The factored walk (pymdp 1.x: nodes valued per modality from factor marginals,
``numba/factored.py``) against the NumPy reference, on every multi-factor model of the stage
table and of the shared-tail tests, with the walk forced where the layout would not pick it;
and the layout's choice between it and the joint-belief walks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine import Agents, GenerativeModel, InferenceConfig
from engine.kernels import reference as ref
from engine.kernels.numba.expected_free_energy import expected_free_energy_one
from engine.kernels.numba.step import WALK_HEADS, WALK_TREE, describe_walk, walk_of
from engine.model import factored_tables
from tests.engine.kernels import test_stages, test_walk_heads
from tests.engine.kernels.test_stages import N_AGENTS, TOL, _case
from world.models import tmaze_model

MODELS: list[tuple[str, Callable[[], GenerativeModel]]] = [
    (name, build) for name, build in test_stages.MODELS if build().num_factors > 1
] + [(name, build) for name, build, _ in test_walk_heads.MODELS]


@pytest.fixture
def factored_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factored_tables, "joint_cost", lambda *args: 1 << 60)


@pytest.mark.parametrize("terms", [(True, True), (True, False), (False, True)],
                         ids=["both", "utility", "gain"])
@pytest.mark.parametrize("concentration", [0.5, 0.02], ids=["spread", "peaked"])
@pytest.mark.parametrize("index", range(len(MODELS)), ids=[m[0] for m in MODELS])
@pytest.mark.usefixtures("factored_always")
def test_factored_walk_matches_reference(index: int, concentration: float,
                                         terms: tuple[bool, bool]) -> None:
    case = _case(MODELS[index][1], seed=3000 + index, semantics="pymdp1")
    assert case.layout.F_sparse.shape[0] == case.model.num_modalities
    assert walk_of(case.km) == WALK_TREE
    config = case.config.replace(use_utility=terms[0], use_states_info_gain=terms[1])
    kc = case.kc._replace(use_utility=terms[0], use_states_info_gain=terms[1])
    qs = case.beliefs(concentration)
    views, sparse, touched = case.scratch()
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    got = []
    for i in range(N_AGENTS):
        expected_free_energy_one(case.km, kc, case.flat(qs, i), qdepth, qj, gacc, gnode, qo,
                                 touched, sparse, G)
        got.append(G.copy())
    want = ref.expected_free_energy(case.model, qs, case.layout.tree.policies, config)
    np.testing.assert_allclose(np.array(got), want, rtol=TOL, atol=TOL)


@pytest.mark.usefixtures("factored_always")
def test_factored_walk_degraded_horizon() -> None:
    case = _case(dict(MODELS)["3f-subsets"], seed=3100, semantics="pymdp1")
    qs = case.beliefs()
    views, sparse, touched = case.scratch()
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    for max_depth in (1, 2):
        kc = case.kc._replace(max_depth=max_depth)
        got = []
        for i in range(N_AGENTS):
            expected_free_energy_one(case.km, kc, case.flat(qs, i), qdepth, qj, gacc, gnode,
                                     qo, touched, sparse, G)
            got.append(G.copy())
        policies = case.layout.tree.policies[:, :max_depth]
        want = ref.expected_free_energy(case.model, qs, policies, case.config)
        np.testing.assert_allclose(np.array(got), want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("policy_len", [1, 2])
def test_the_parallel_step_runs_the_factored_walk_as_the_reference(policy_len: int) -> None:
    """Through ``step_agents`` and the packed entry: G and actions equal the reference's."""
    model = dict(MODELS)["3f-subsets"]()
    config = InferenceConfig(policy_len=policy_len, dtype="float64", num_iter=16,
                             semantics="pymdp1")
    for n in (3, 80):
        compiled = Agents(model, n, config, seed=1)
        assert compiled.layout.F_sparse.shape[0] == model.num_modalities
        reference = Agents(model, n, config, seed=1, backend="reference")
        rng = np.random.default_rng(policy_len)
        for _ in range(3):
            obs = np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)
            np.testing.assert_array_equal(compiled.step(obs), reference.step(obs))
            np.testing.assert_allclose(compiled.G, reference.G, rtol=TOL, atol=TOL)


def test_the_layout_picks_the_cheaper_walk() -> None:
    tmaze = _case(tmaze_model, seed=1, semantics="pymdp1")
    assert tmaze.layout.F_sparse.shape[0] == 0
    assert walk_of(tmaze.km) == WALK_HEADS
    assert "joint beliefs cost less" in describe_walk(tmaze.layout)
    subsets = _case(dict(test_stages.MODELS)["3f-subsets"], seed=2, semantics="pymdp1")
    assert subsets.layout.F_sparse.shape[0] == 3
    assert describe_walk(subsets.layout).startswith("factored walk: ")
    assert "per-modality tables cost less" in describe_walk(subsets.layout)
    pymdp0 = _case(dict(test_stages.MODELS)["3f-subsets"], seed=2, semantics="pymdp0")
    assert pymdp0.layout.F_sparse.shape[0] == 0
