"""The learning population's parameter plumbing: which arrays are per agent, the priors
"like" a model, and the status line's drift figure."""

from __future__ import annotations

import numpy as np
import pytest

from engine import ConfigError, GenerativeModel, InferenceConfig
from engine.runtime.agents import Agents
from engine.runtime.learnt_params import (
    ParamSpec,
    drift,
    expand,
    own_entries,
    per_agent_flags,
)
from engine.runtime.sizing import ModelShape, learnt_bytes
from world.models import random_model, tmaze_model


def _model():
    return random_model(np.random.default_rng(1), [3, 2], [4, 3], [2, 1]).with_priors(
        pA_scale=2.0, pB_scale=0.5)


def test_priors_like_the_model() -> None:
    model = _model()
    for p, a in zip(model.pA, model.A, strict=True):
        np.testing.assert_array_equal(p, 2.0 * a)
    for p, b in zip(model.pB, model.B, strict=True):
        np.testing.assert_array_equal(p, 0.5 * b)
    assert model.with_priors().pA is model.pA
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="pA_scale must be a finite number > 0"):
            model.with_priors(pA_scale=bad)


@pytest.mark.parametrize("learn_A,learn_B", [(True, False), (False, True), (True, True)])
def test_spec_owns_what_is_learnt(learn_A: bool, learn_B: bool) -> None:
    model = _model()
    config = InferenceConfig(learn_A=learn_A, learn_B=learn_B, use_param_info_gain=True)
    agents = Agents(model, 1, config)
    spec = ParamSpec.of(agents.kernel_params, agents.layout)
    assert spec.per_agent == per_agent_flags(learn_A, learn_B)
    assert spec.bytes_per_agent() == learnt_bytes(model, config)
    assert set(spec.per_agent_arrays(5)) == {f"param_{n}" for n, mine in zip(
        ("A", "pA", "Bt", "pBt"), spec.per_agent, strict=True) if mine}
    assert spec.pA_gain and spec.pB_gain


def test_drift_is_zero_at_the_prior_and_grows_with_learning() -> None:
    model = _model()
    agents = Agents(model, 4, InferenceConfig(learn_A=True, dtype="float64"), seed=2)
    start = expand(agents.kernel_params, "pA")[0]
    layout = agents.layout
    assert drift(expand(agents.kernel_params, "pA"), start, layout.A_offset,
                 layout.num_obs) == 0.0
    rng = np.random.default_rng(0)
    values = []
    for _ in range(6):
        agents.step(np.stack([rng.integers(0, o, size=4) for o in model.num_obs], axis=1))
        values.append(drift(expand(agents.kernel_params, "pA"), start, layout.A_offset,
                            layout.num_obs))
    assert values[0] > 0 and values[-1] > values[0]


def sparse_learning_model() -> GenerativeModel:
    """A and B with zeros; counts with zeros where A / B is positive and positive where it is
    zero (every case of ``compact_indices``)."""
    rng = np.random.default_rng(11)
    base = random_model(rng, [3, 4], [3, 2], [3, 2])

    def thin(arrays: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for a in arrays:
            a = np.where(rng.random(a.shape) < 0.6, a, 0.0)
            a[0] += 0.05                        # every column keeps a positive entry
            out.append(a / a.sum(axis=0, keepdims=True))
        return out

    def counts(arrays: list[np.ndarray], scale: float) -> list[np.ndarray]:
        out = []
        for a in arrays:
            p = np.where(rng.random(a.shape) < 0.2, 0.0, scale * a + (rng.random(a.shape) < 0.2))
            p[0] += 0.25                        # no column of counts all zero
            out.append(p)
        return out

    A, B = thin(list(base.A)), thin(list(base.B))
    pA, pB = counts(A, 2.0), counts(B, 0.5)
    return GenerativeModel(A=A, B=B, C=list(base.C), D=list(base.D), pA=pA, pB=pB)


def test_one_learnt_modality_owns_only_its_nonzeros() -> None:
    """The T-maze learning its reward modality (of three): each agent owns that modality's
    non-zero entries of A and pA, nothing of the others."""
    model = tmaze_model().with_priors(pA_scale=1.0)
    config = InferenceConfig(learn_A=True, modalities_to_learn=(1,))
    reward = np.count_nonzero(model.with_full_A().A[1])
    assert reward < model.with_full_A().A[1].size
    assert own_entries(model, config) == (reward, reward, 0, 0)
    assert learnt_bytes(model, config) == 16 * reward
    agents = Agents(model, 3, config)
    spec = ParamSpec.of(agents.kernel_params, agents.layout)
    assert spec.compact == (reward, reward, 0, 0)
    assert spec.bytes_per_agent() == 16 * reward
    assert agents.memory().per_agent_breakdown["pA"] == 8 * reward
    dense = 16 * sum(a.size for a in model.with_full_A().A)
    assert learnt_bytes(model, config) < dense / 5


def test_sparse_counts_store_only_what_can_grow() -> None:
    model = sparse_learning_model()
    config = InferenceConfig(learn_A=True, learn_B=True)
    full = model.with_full_A()
    grows_A = sum(np.count_nonzero((a > 0) | (p > 0)) for a, p in zip(full.A, full.pA,
                                                                     strict=True))
    grows_B = sum(np.count_nonzero((b > 0) | (p > 0)) for b, p in zip(model.B, model.pB,
                                                                     strict=True))
    n_A, n_pA, n_B, n_pB = own_entries(model, config)
    assert (n_pA, n_pB) == (grows_A, grows_B)
    assert n_pA < sum(a.size for a in full.A) and n_pB < sum(b.size for b in model.B)
    assert n_A <= sum(a.size for a in full.A) and n_B <= sum(b.size for b in model.B)


def _dense(kp):  # noqa: ANN001, ANN202
    """``kp`` with every entry of the four arrays each agent's own (the layout before)."""
    n = kp.A.shape[0]
    rows = {name: getattr(kp, f"{name}0") for name in ("A", "pA", "Bt", "pBt")}
    return kp._replace(**{name: np.tile(row, (n, 1)) for name, row in rows.items()},
                       **{f"{name}_idx": np.arange(row.size) for name, row in rows.items()})


@pytest.mark.parametrize("subset", [False, True])
def test_own_entries_step_as_full_rows(subset: bool) -> None:
    """The invariant: stepping each agent's own entries gives, bit for bit, what stepping
    every entry per agent gives (sparse priors, a subset learnt, a reset mid-run)."""
    model = sparse_learning_model()
    config = InferenceConfig(learn_A=True, learn_B=True, use_param_info_gain=True, lr_pA=0.7,
                             dtype="float64", gamma=4.0,
                             modalities_to_learn=(0,) if subset else "all",
                             factors_to_learn=(1,) if subset else "all")
    compact, dense = Agents(model, 9, config, seed=3), Agents(model, 9, config, seed=3)
    dense._kp = _dense(dense._kp)
    rng = np.random.default_rng(4)
    for t in range(10):
        if t == 5:
            for agents in (compact, dense):
                agents.reset(np.arange(0, 9, 2), keep_action=False)
        obs = np.stack([rng.integers(0, o, size=9) for o in model.num_obs], axis=1)
        np.testing.assert_array_equal(compact.step(obs), dense.step(obs))
    for name in ("A", "pA", "Bt", "pBt"):
        np.testing.assert_array_equal(expand(compact.kernel_params, name),
                                      getattr(dense.kernel_params, name), err_msg=name)
    np.testing.assert_array_equal(compact.q_pi, dense.q_pi)


@pytest.mark.parametrize("learn", ["A", "B", "AB"])
def test_an_unbuilt_model_is_bounded_above(learn: str) -> None:
    """A world's model not yet built (its shape only) is counted at no less than what the
    built model's agents own, and at no more than the dense rows."""
    model = sparse_learning_model()
    for config in (InferenceConfig(learn_A="A" in learn, learn_B="B" in learn),
                   InferenceConfig(learn_A="A" in learn, learn_B="B" in learn,
                                   modalities_to_learn=(0,), factors_to_learn=(1,))):
        bound = learnt_bytes(ModelShape.of(model), config)
        dense = 16 * (sum(a.size for a in model.with_full_A().A) * ("A" in learn)
                      + sum(b.size for b in model.B) * ("B" in learn))
        assert learnt_bytes(model, config) <= bound <= dense
