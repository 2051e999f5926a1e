"""The learning population's parameter plumbing: which arrays are per agent, the priors
"like" a model, and the status line's drift figure."""

from __future__ import annotations

import numpy as np
import pytest

from engine import ConfigError, InferenceConfig
from engine.runtime.agents import Agents
from engine.runtime.learnt_params import ParamSpec, drift, per_agent_flags
from engine.runtime.sizing import learnt_bytes
from world.models import random_model


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
    spec = ParamSpec.of(Agents(model, 1, config).kernel_params)
    assert spec.per_agent == per_agent_flags(learn_A, learn_B)
    assert spec.bytes_per_agent() == learnt_bytes(model, config)
    assert set(spec.per_agent_arrays(5)) == {f"param_{n}" for n, mine in zip(
        ("A", "pA", "Bt", "pBt"), spec.per_agent, strict=True) if mine}
    assert spec.pA_gain and spec.pB_gain


def test_drift_is_zero_at_the_prior_and_grows_with_learning() -> None:
    model = _model()
    agents = Agents(model, 4, InferenceConfig(learn_A=True, dtype="float64"), seed=2)
    start = agents.kernel_params.pA[0].copy()
    layout = agents.layout
    assert drift(agents.kernel_params.pA, start, layout.A_offset, layout.num_obs) == 0.0
    rng = np.random.default_rng(0)
    values = []
    for _ in range(6):
        agents.step(np.stack([rng.integers(0, o, size=4) for o in model.num_obs], axis=1))
        values.append(drift(agents.kernel_params.pA, start, layout.A_offset, layout.num_obs))
    assert values[0] > 0 and values[-1] > values[0]
