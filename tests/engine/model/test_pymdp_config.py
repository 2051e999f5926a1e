"""What ``InferenceConfig`` takes from, or refuses against, pymdp 0.0.7.1: a control_fac_idx
that leaves out a factor with several actions, and learning, which is never implied by pA/pB."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, GenerativeModel, InferenceConfig
from engine.errors import ConfigError
from engine.model.layout import layout_of
from world.models import random_model


def _two_action_factors() -> GenerativeModel:
    return random_model(np.random.default_rng(3), [3, 2], [3, 2], [3, 2])


def test_control_fac_idx_leaving_out_a_factor_with_actions_is_refused() -> None:
    model = _two_action_factors()
    config = InferenceConfig(control_fac_idx=(0,), dtype="float64")
    with pytest.raises(ConfigError, match=r"control_fac_idx=\[0\] leaves out factor\(s\) \[1\]"):
        layout_of(model, config)
    with pytest.raises(ConfigError, match="leaves out factor"):
        Agents(model, 1, config)
    with pytest.raises(ConfigError, match="leaves out factor"):
        model.to_pymdp(config)
    layout_of(model, InferenceConfig(control_fac_idx=(0, 1)))      # naming both is fine


def test_from_pymdp_keeps_pymdps_policies_for_that_combination() -> None:
    pytest.importorskip("pymdp")
    from pymdp import utils
    from pymdp.agent import Agent

    model = _two_action_factors().with_full_A()

    def obj(arrays: tuple[np.ndarray, ...]) -> np.ndarray:
        out = utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.array(a)
        return out

    agent = Agent(A=obj(model.A), B=obj(model.B), C=obj(model.C), D=obj(model.D),
                  control_fac_idx=[0])
    ours = GenerativeModel.from_pymdp(agent)
    config = InferenceConfig.from_pymdp(agent)
    assert config.control_fac_idx == (0,)
    agents = Agents(ours, 1, config)
    assert agents.policies.shape == (6, 1, 2)                      # pymdp: 3 x 2 actions
    np.testing.assert_array_equal(agents.policies, np.array(agent.policies))
    agents.step(np.zeros((1, 2), dtype=np.int64))
    agent.infer_states([0, 0])
    q_pi, _ = agent.infer_policies()
    np.testing.assert_allclose(agents.q_pi[0], q_pi, rtol=0, atol=1e-10)


def _pymdp_with_counts(param_gain: bool):  # noqa: ANN202
    pytest.importorskip("pymdp")
    from tests import pymdp_peer  # noqa: F401  (patches pymdp 0.0.7.1 for NumPy 2)

    model = random_model(np.random.default_rng(5), [3, 2], [3], [3], with_pA=True,
                         with_pB=True)
    return model.to_pymdp(InferenceConfig(dtype="float64", use_param_info_gain=param_gain))


def test_from_pymdp_does_not_learn_unless_asked() -> None:
    agent = _pymdp_with_counts(param_gain=False)
    config = InferenceConfig.from_pymdp(agent)
    assert not config.learn_A and not config.learn_B
    asked = InferenceConfig.from_pymdp(agent, learn_A=True, learn_B=True)
    assert asked.learn_A and asked.learn_B
    agent.pB = None
    with pytest.raises(ConfigError, match="learn_B=True needs a pymdp agent with pB"):
        InferenceConfig.from_pymdp(agent, learn_B=True)


def test_from_pymdp_refuses_d_learning_instead_of_dropping_it() -> None:
    agent = _pymdp_with_counts(param_gain=False)
    agent.pD = [np.ones(s) for s in agent.num_states]
    with pytest.raises(ConfigError, match="holds pD \\(D learning\\)"):
        InferenceConfig.from_pymdp(agent)
    agent.pD = None
    assert InferenceConfig.from_pymdp(agent).semantics == "pymdp0"


def test_pymdp1_defaults_apply_to_fields_left_unset() -> None:
    v1 = InferenceConfig(semantics="pymdp1")
    assert (v1.gamma, v1.alpha, v1.num_iter, v1.sampling_mode) == (1.0, 1.0, 16, "full")
    v0 = InferenceConfig()
    assert (v0.gamma, v0.alpha, v0.num_iter, v0.sampling_mode) == (16.0, 16.0, 10, "marginal")
    assert InferenceConfig.pymdp1(gamma=4.0).gamma == 4.0
    assert InferenceConfig.from_dict(v1.to_dict()) == v1
    with pytest.raises(ConfigError, match="semantics: must be 'pymdp0'"):
        InferenceConfig(semantics="pymdp2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="learn_A: is not supported with semantics='pymdp1'"):
        InferenceConfig.pymdp1(learn_A=True)


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_param_info_gain_from_pymdp_without_learning_matches_pymdp(backend: str) -> None:
    """pA / pB held for the parameter information gain only: agentloop keeps the gain and,
    like the pymdp agent that never calls update_A / update_B, learns nothing."""
    agent = _pymdp_with_counts(param_gain=True)
    config = InferenceConfig.from_pymdp(agent)
    assert config.use_param_info_gain and not config.learn_A
    agents = Agents(GenerativeModel.from_pymdp(agent), 1, config,
                    backend=backend)  # type: ignore[arg-type]
    for obs in ([0, 1], [2, 0], [1, 1]):
        agents.step(np.array([obs]))
        agent.infer_states(obs)
        q_pi, G = agent.infer_policies()
        agent.sample_action()
        np.testing.assert_allclose(agents.G[0], G, rtol=0, atol=1e-10)
        np.testing.assert_allclose(agents.q_pi[0], q_pi, rtol=0, atol=1e-10)
