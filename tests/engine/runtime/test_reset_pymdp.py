"""``reset`` keeps the last action by default, as pymdp 0.0.7.1's ``Agent.reset()`` does (the
next prior is ``B[:, :, last action] @ uniform``); ``keep_action=False`` starts from D."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, InferenceConfig
from engine.runtime.engine import Engine
from world.models import tmaze_model

#: T-maze observations (location, reward, cue): the centre, the cue arm showing cue 1, and
#: the left arm with no reward.
TICKS = [np.array([[0, 0, 0]]), np.array([[3, 0, 1]]), np.array([[1, 0, 0]])]


def _pymdp_run(model, config: InferenceConfig, fresh_after_reset: bool  # noqa: ANN001
               ) -> list[list[np.ndarray]]:
    pytest.importorskip("pymdp")
    agent = model.to_pymdp(config)
    beliefs = []
    for k, obs in enumerate(TICKS):
        if k == 2:
            if fresh_after_reset:
                agent = model.to_pymdp(config)
            else:
                agent.reset()
        qs = agent.infer_states(list(obs[0]))
        beliefs.append([np.array(q) for q in qs])
        agent.infer_policies()
        agent.sample_action()
    return beliefs


@pytest.mark.parametrize("backend", ["numba", "reference", "xp-numpy"])
@pytest.mark.parametrize("keep_action", [True, False])
def test_reset_matches_pymdp_agent_reset(backend: str, keep_action: bool) -> None:
    model = tmaze_model()
    config = InferenceConfig(dtype="float64")
    expected = _pymdp_run(model, config, fresh_after_reset=not keep_action)
    agents = Agents(model, 1, config, backend=backend)  # type: ignore[arg-type]
    for k, obs in enumerate(TICKS):
        if k == 2:
            if keep_action:
                agents.reset()                   # the default is pymdp's Agent.reset()
            else:
                agents.reset(keep_action=False)
        agents.step(obs)
        for ours, theirs in zip(agents.qs, expected[k], strict=True):
            np.testing.assert_allclose(ours[0], theirs, rtol=0, atol=1e-10)
    # the two resets differ here (D puts the agent in the centre; B[cue move] @ uniform not)
    other = _pymdp_run(model, config, fresh_after_reset=keep_action)
    assert np.abs(other[2][0] - expected[2][0]).max() > 0.1


@pytest.mark.parametrize("keep_action", [True, False])
def test_engine_reset_equals_agents_reset(keep_action: bool) -> None:
    model = tmaze_model()
    n = 6
    reference = Agents(model, n, InferenceConfig())
    chosen = np.array([1, 4])
    with Engine(model, n, workers=0) as engine:
        for k, obs in enumerate(TICKS):
            if k == 2:
                engine.reset(chosen, keep_action=keep_action)
                reference.reset(chosen, keep_action=keep_action)
            many = np.repeat(obs, n, axis=0)
            np.testing.assert_array_equal(engine.step(many), reference.step(many))
            for ours, theirs in zip(engine.qs, reference.qs, strict=True):
                np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
