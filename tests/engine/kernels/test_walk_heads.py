"""The multi-factor walk with a shared tail of factors (``policy_values_heads``) against the
NumPy reference: where it applies, its outcome-table kinds (dense, sparse, none), beliefs that
straddle pymdp 0.0.7.1's e^-16 cut, transitions that depend on other factors, a policy set
whose tail action changes with depth, and the degraded horizon."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from engine import Agents, GenerativeModel, InferenceConfig
from engine.kernels import reference as ref
from engine.kernels.numba.expected_free_energy import expected_free_energy_one
from engine.kernels.numba.scratch import head_layout
from engine.kernels.numba.step import (
    WALK_HEADS,
    WALK_TREE,
    describe_walk,
    kernel_model,
    walk_of,
)
from engine.model import factored_tables, outcome_tables
from engine.model.layout import layout_of
from engine.model.shared_tail import head_factors
from tests.engine.kernels.test_stages import N_AGENTS, TOL, Case, _case
from world.models import random_model, tmaze_model


def _columns(rng: np.random.Generator, *shape: int) -> np.ndarray:
    a = rng.gamma(0.5, size=shape) + 1e-3
    return a / a.sum(axis=0, keepdims=True)


def _tail_dependencies() -> GenerativeModel:
    """Factor 0 controlled and moved by factor 2 too; factors 1 and 2 uncontrolled, 2 moved by
    1 and 2 (a tail that depends on itself only, a head that depends on the tail)."""
    rng = np.random.default_rng(41)
    return GenerativeModel(A=[_columns(rng, 3, 3, 2), _columns(rng, 4, 3),
                              _columns(rng, 2, 3, 2, 3)],
                           B=[_columns(rng, 3, 3, 3, 2), _columns(rng, 2, 2, 1),
                              _columns(rng, 3, 2, 3, 1)],
                           C=[rng.normal(size=3), rng.normal(size=4), rng.normal(size=2)],
                           A_factor_list=[[0, 1], [2], [0, 1, 2]],
                           B_factor_list=[[0, 2], [1], [1, 2]])


def _uncontrolled_moved_by_controlled() -> GenerativeModel:
    """Factor 1 uncontrolled but moved by factor 0: it cannot be in the tail."""
    rng = np.random.default_rng(42)
    return GenerativeModel(A=[_columns(rng, 3, 3, 2)], B=[_columns(rng, 3, 3, 2),
                                                         _columns(rng, 2, 3, 1)],
                           C=[rng.normal(size=3)], B_factor_list=[[0], [0]])


def _tail_action_by_depth() -> GenerativeModel:
    """Factor 1 has two actions, but every policy takes action t % 2 at step t."""
    base = random_model(np.random.default_rng(43), [3, 4], [4, 3], [3, 2], [[0, 1], [1]])
    policies = np.array([[[a, 0], [b, 1], [c, 0]] for a in range(3) for b in range(3)
                         for c in range(3)])
    return GenerativeModel(A=list(base.A), B=list(base.B), C=list(base.C), D=list(base.D),
                           A_factor_list=[[0, 1], [1]], policies=policies)


def _one_hot_tail() -> GenerativeModel:
    """A controlled position seen exactly and an uncontrolled switch seen exactly: every joint
    state has one joint outcome (the sparse table)."""
    base = random_model(np.random.default_rng(47), [5, 2], [5, 2], [4, 1],
                        [[0], [1]])
    return GenerativeModel(A=[np.eye(5), np.eye(2)], B=list(base.B), C=list(base.C),
                           D=list(base.D), A_factor_list=[[0], [1]])


def two_factor_split_tail() -> GenerativeModel:
    """test_gain_paths' two-factor split model with its second factor uncontrolled."""
    rng = np.random.default_rng(3)
    model = random_model(rng, [40, 3], [4, 3], [3, 1], [[0, 1], [1]])
    peaked = np.full((40, 4, 3), 0.2 / 39)
    for s0 in range(4):
        for s1 in range(3):
            peaked[(s0 * 7 + s1 * 5) % 40, s0, s1] = 0.8
    return GenerativeModel(A=[peaked, model.A[1]], B=model.B, C=model.C, D=model.D,
                           A_factor_list=[[0, 1], [1]])


#: (name, build, head factors)
MODELS: list[tuple[str, Callable[[], GenerativeModel], int]] = [
    ("two-controlled-one-not", lambda: random_model(np.random.default_rng(44), [4, 3, 2],
                                                    [4, 3, 2], [3, 2, 1],
                                                    [[0], [1, 2], [0, 2]]), 2),
    ("deterministic-tail", lambda: random_model(np.random.default_rng(45), [5, 3], [6, 2],
                                                [4, 1], [[0], [0, 1]],
                                                deterministic_B=True), 1),
    ("tail-dependencies", _tail_dependencies, 1),
    ("tail-action-by-depth", _tail_action_by_depth, 1),
    ("split-with-tail", two_factor_split_tail, 1),
    ("one-hot-tail", _one_hot_tail, 1),
]


def _run(case: Case, concentration: float,
         max_depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    qs = case.beliefs(concentration)
    views, sparse, touched = case.scratch()
    _, _, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    kc = case.kc if max_depth is None else case.kc._replace(max_depth=max_depth)
    got = []
    for i in range(N_AGENTS):
        expected_free_energy_one(case.km, kc, case.flat(qs, i), qdepth, qj, gacc, gnode, qo,
                                 touched, sparse, G)
        got.append(G.copy())
    assert not qo.any(), "the walk leaves the outcome buffer zeroed"
    policies = case.layout.tree.policies
    if max_depth is not None:
        policies = policies[:, :max_depth]
    return np.array(got), ref.expected_free_energy(case.model, qs, policies, case.config)


@pytest.mark.parametrize("small_tables", ["dense", "sparse"])
@pytest.mark.parametrize("semantics", ["pymdp0", "pymdp1"])
@pytest.mark.parametrize("concentration", [0.5, 0.02], ids=["spread", "peaked"])
@pytest.mark.parametrize("index", range(len(MODELS)), ids=[m[0] for m in MODELS])
def test_heads_walk_matches_reference(index: int, concentration: float, semantics: str,
                                     small_tables: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """As laid out, and with small tables read sparsely where their share says so."""
    monkeypatch.setattr(factored_tables, "factored_cost", lambda *args: 1 << 60)
    if small_tables == "sparse":
        monkeypatch.setattr(outcome_tables, "SMALL_GAIN_TABLE", 0)
    name, build, heads = MODELS[index]
    case = _case(build, seed=2000 + index, semantics=semantics)
    assert head_layout(case.layout)[0] == heads
    got, want = _run(case, concentration)
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("semantics", ["pymdp0", "pymdp1"])
def test_heads_walk_degraded_horizon(semantics: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factored_tables, "factored_cost", lambda *args: 1 << 60)
    case = _case(MODELS[0][1], seed=2100, semantics=semantics)
    for max_depth in (1, 2):
        got, want = _run(case, 0.5, max_depth)
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_table_kinds_and_where_the_walk_does_not_apply(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense and sparse outcome tables, none on the split path; no tail where every factor is
    controlled or an uncontrolled factor moves with a controlled one. A small table is read
    densely whatever its share of non-zeros."""
    config = InferenceConfig(policy_len=3)
    dense = layout_of(MODELS[0][1](), config)
    assert dense.gain_path == "dense" and head_layout(dense)[3] == 12 * dense.n_joint_obs
    small = layout_of(_one_hot_tail(), config)
    assert small.gain_path == "dense"
    monkeypatch.setattr(outcome_tables, "SMALL_GAIN_TABLE", 0)
    sparse = layout_of(_one_hot_tail(), config)
    assert sparse.gain_path == "sparse" and head_layout(sparse)[3] == sparse.po_val.shape[0]
    split = layout_of(two_factor_split_tail(), config)
    assert split.gain_path == "split" and head_layout(split)[3] == 0
    for model in (_uncontrolled_moved_by_controlled(),
                  random_model(np.random.default_rng(46), [3], [3, 2], [2, 2])):
        layout = layout_of(model, config)
        tree = layout.tree
        assert head_factors(layout.num_states, tree.depth, tree.action,
                            layout.B_deps) == layout.n_factors
        assert walk_of(kernel_model(layout)) == WALK_TREE
    for layout in (dense, sparse, split):
        assert walk_of(kernel_model(layout)) == WALK_HEADS
    assert "agents side by side" in describe_walk(small)        # dense: the walk in lanes
    assert "side by side" not in describe_walk(sparse)


@pytest.mark.parametrize("small_tables", ["dense", "sparse"])
@pytest.mark.parametrize("policy_len", [1, 2])
@pytest.mark.parametrize("name", ["tmaze", "two-controlled-one-not", "one-hot-tail",
                                  "split-with-tail"])
def test_the_parallel_step_runs_the_walk_as_the_reference(
        name: str, policy_len: int, small_tables: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``step_agents`` (a prange body, where Numba once dropped one of the walk's
    stores; lanes of agents where the table is dense): G equals the reference's over a few
    steps, 20 agents (a full lane group and a partial one)."""
    if small_tables == "sparse":
        monkeypatch.setattr(outcome_tables, "SMALL_GAIN_TABLE", 0)
    build = tmaze_model if name == "tmaze" else dict((m[0], m[1]) for m in MODELS)[name]
    model = build()
    config = InferenceConfig(policy_len=policy_len, dtype="float64", num_iter=16, dF_tol=1e-6)
    compiled = Agents(model, 20, config, seed=1)
    reference = Agents(model, 20, config, seed=1, backend="reference")
    rng = np.random.default_rng(policy_len)
    for _ in range(3):
        obs = np.stack([rng.integers(0, o, size=20) for o in model.num_obs], axis=1)
        compiled.step(obs)
        reference.step(obs)
        np.testing.assert_allclose(compiled.G, reference.G, rtol=TOL, atol=TOL)
