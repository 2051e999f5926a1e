"""Agents: the in-process facade. Bad input, allocation, determinism, stochastic selection."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Agents, ConfigError, InferenceConfig, ObservationError
from engine.kernels.numba.step import SERIAL_BELOW
from world.models import grid_model, random_model


def _obs(model, n: int, rng: np.random.Generator) -> np.ndarray:  # noqa: ANN001
    return np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)


def _snapshot(agents: Agents) -> list[np.ndarray]:
    return [np.array(x) for x in (*agents.qs, agents.q_pi, agents.G, agents.actions,
                                  agents._prev_action, agents._started)]


@pytest.mark.parametrize("bad,words", [
    (lambda o: o[:, :1], "shape"),
    (lambda o: o[:-1], "shape"),
    (lambda o: o.astype(np.float64), "integer dtype"),
    (lambda o: np.where(np.arange(o.shape[0])[:, None] == 3, -1, o), "agent 3, modality 0"),
    (lambda o: np.where((np.arange(o.shape[0])[:, None] == 4) & (np.arange(2) == 1), 3, o),
     "agent 4, modality 1"),
    (lambda o: o.tolist(), "NumPy integer array"),
    (lambda o: o.astype(bool), "integer dtype"),
])
def test_bad_observations_are_rejected_and_change_nothing(bad, words: str) -> None:  # noqa: ANN001
    model = grid_model(4)
    agents = Agents(model, 8, InferenceConfig())
    rng = np.random.default_rng(0)
    agents.step(_obs(model, 8, rng))
    before, tick = _snapshot(agents), agents.tick
    with pytest.raises(ObservationError, match=words):
        agents.step(bad(_obs(model, 8, rng)))
    for x, y in zip(before, _snapshot(agents), strict=True):
        np.testing.assert_array_equal(x, y)
    assert agents.tick == tick


def test_nan_observations_rejected() -> None:
    model = grid_model(3)
    agents = Agents(model, 2, InferenceConfig())
    with pytest.raises(ObservationError, match="integer dtype"):
        agents.step(np.array([[np.nan, 0], [1, 1]]))


def test_warm_step_allocates_nothing_per_agent() -> None:
    """After warm-up, a step's only allocations are Numba's per-call argument wrappers.

    Their number is fixed per call for each entry (the parallel step from 64 agents, the
    packed one-call step below): stepping 2,000 or 5,000 agents, 10 or 40, once or five times
    per measurement, allocates the same per call, and Python-side memory does not grow.
    """
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    rng = np.random.default_rng(1)
    per_call: dict[bool, list[float]] = {True: [], False: []}
    for n in (2000, 5000, 10, 40):
        for model in (grid_model(5), random_model(rng, [3, 2], [3, 2], [2, 2])):
            agents = Agents(model, n, InferenceConfig(policy_len=2))
            obs = _obs(model, n, rng)
            agents.step(obs)
            agents.step(obs)
            before = rtsys.get_allocation_stats()
            for _ in range(5):
                agents.step(obs)
            after = rtsys.get_allocation_stats()
            assert after.alloc - before.alloc == after.free - before.free
            per_call[n < SERIAL_BELOW].append((after.alloc - before.alloc) / 5)
    assert len(set(per_call[True])) == 1 and len(set(per_call[False])) == 1, per_call
    # Python-side: Numba's dispatcher fills a bounded cache (~40 KB) over its first ~1,000
    # calls; after that a step leaves nothing behind.
    tracemalloc.start()
    for _ in range(1500):
        agents.step(obs[:10] if agents.n == 10 else obs)
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(300):
        agents.step(obs)
    end, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert end - start < 1024, f"Python memory grew by {end - start} bytes"


@pytest.mark.parametrize("config", [InferenceConfig(), InferenceConfig(
    action_selection="stochastic", policy_len=2, alpha=2.0)], ids=["deterministic", "stochastic"])
@pytest.mark.parametrize("model_name", ["random-2-factors", "grid-5"])
def test_results_do_not_depend_on_threads_or_slicing(config: InferenceConfig,
                                                     model_name: str) -> None:
    """Bit-identical results whatever the thread count or split (memo hits included)."""
    if model_name == "grid-5":
        model = grid_model(5)
        config = config.replace(policy_len=3)
    else:
        model = random_model(np.random.default_rng(2), [4, 3], [4, 3], [3, 2])
    n = 300
    rng = np.random.default_rng(3)
    whole1 = Agents(model, n, config, seed=5, threads=1)
    whole2 = Agents(model, n, config, seed=5, threads=2)
    left = Agents(model, 100, config, seed=5)
    right = Agents(model, 200, config, seed=5, agent_id_offset=100)
    for _ in range(6):
        obs = _obs(model, n, rng)
        a1 = np.array(whole1.step(obs))
        a2 = np.array(whole2.step(obs))
        parts = np.concatenate([left.step(obs[:100]), right.step(obs[100:])])
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(a1, parts)
        np.testing.assert_array_equal(whole1.q_pi, whole2.q_pi)
        np.testing.assert_array_equal(whole1.G[:100], left.G)
        np.testing.assert_array_equal(whole1.G[100:], right.G)


@pytest.mark.parametrize("model_name", ["random-2-factors", "grid-5"])
def test_first_steps_shared_by_observation_equal_their_own(model_name: str) -> None:
    """Agents starting an episode on the same observation share its work (the first-step
    memo); each still draws its own action, and every number equals stepping it alone."""
    if model_name == "grid-5":
        model = grid_model(5)
    else:
        model = random_model(np.random.default_rng(2), [4, 3], [4, 3], [3, 2])
    config = InferenceConfig(action_selection="stochastic", policy_len=2, alpha=2.0)
    n = 40
    rng = np.random.default_rng(4)
    distinct = _obs(model, 3, rng)
    together = Agents(model, n, config, seed=9, threads=2)
    alone = [Agents(model, 1, config, seed=9, agent_id_offset=i) for i in range(n)]
    for k in range(3):
        obs = distinct[rng.integers(0, 3, size=n)]
        if k == 2:                                   # half the agents start a new episode
            together.reset(np.arange(0, n, 2), keep_action=False)
            for i in range(0, n, 2):
                alone[i].reset(np.array([0]), keep_action=False)
        actions = np.array(together.step(obs))
        for i, agent in enumerate(alone):
            np.testing.assert_array_equal(actions[i], agent.step(obs[i:i + 1])[0])
            np.testing.assert_array_equal(together.q_pi[i], agent.q_pi[0])
            np.testing.assert_array_equal(together.G[i], agent.G[0])
            for mine, its in zip(together.qs, agent.qs, strict=True):
                np.testing.assert_array_equal(mine[i], its[0])
    assert len(np.unique(np.array(together.actions), axis=0)) > 1


def test_stochastic_actions_follow_softmax_of_marginals() -> None:
    """Draws of many identical agents follow softmax(alpha ln P) of their action marginal."""
    model = random_model(np.random.default_rng(4), [3], [4], [4], sharpness=2.0)
    config = InferenceConfig(action_selection="stochastic", alpha=1.5, dtype="float64")
    n = 40_000
    agents = Agents(model, n, config, seed=11)
    obs = np.zeros((n, 1), dtype=np.int64)
    actions = np.array(agents.step(obs))[:, 0]
    marg = np.zeros(4)
    for p, policy in enumerate(agents.policies):
        marg[policy[0, 0]] += agents.q_pi[0, p]
    expected = np.exp(1.5 * np.log(marg / marg.sum() + 1e-16))
    expected /= expected.sum()
    observed = np.bincount(actions, minlength=4) / n
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) < 5 * sigma + 1e-12), (observed, expected)
    again = Agents(model, n, config, seed=11)
    np.testing.assert_array_equal(again.step(obs)[:, 0], actions)
    other = Agents(model, n, config, seed=12)
    assert not np.array_equal(other.step(obs)[:, 0], actions)


def test_uncontrolled_factor_action_is_zero() -> None:
    model = random_model(np.random.default_rng(5), [3, 2], [3, 2], [3, 1])
    agents = Agents(model, 50, InferenceConfig(action_selection="stochastic", alpha=1.0))
    actions = agents.step(_obs(model, 50, np.random.default_rng(6)))
    assert np.all(actions[:, 1] == 0)


def test_actions_view_is_read_only_and_reset_restarts() -> None:
    model = grid_model(3)
    agents = Agents(model, 4, InferenceConfig())
    actions = agents.step(np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ValueError):
        actions[0, 0] = 1
    agents.reset()
    assert agents.tick == 0
    np.testing.assert_allclose(agents.qs[0], 1.0 / 9)


def test_constructor_errors() -> None:
    model = grid_model(3)
    with pytest.raises(ConfigError, match="positive"):
        Agents(model, 0)
    with pytest.raises(ConfigError, match="backend"):
        Agents(model, 1, backend="gpu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pA"):
        Agents(model, 1, InferenceConfig(learn_A=True), backend="reference")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sharpness=st.sampled_from([0.05, 1.0, 20.0]),
       policy_len=st.integers(1, 2))
def test_beliefs_and_policy_posteriors_are_distributions(seed: int, sharpness: float,
                                                         policy_len: int) -> None:
    rng = np.random.default_rng(seed)
    model = random_model(rng, [3, 2], [3, 2], [2, 2], sharpness=sharpness)
    agents = Agents(model, 5, InferenceConfig(policy_len=policy_len, dtype="float64"))
    for _ in range(3):
        agents.step(_obs(model, 5, rng))
        for q in agents.qs:
            assert np.all(q >= 0)
            np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(agents.q_pi.sum(axis=1), 1.0, atol=1e-12)
        assert np.all(np.isfinite(agents.G))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_relabelling_states_permutes_beliefs(seed: int) -> None:
    """Permuting hidden-state labels consistently in A, B, D permutes the posterior."""
    rng = np.random.default_rng(seed)
    base = random_model(rng, [4], [5], [3])
    perm = rng.permutation(5)
    permuted = type(base)(A=[base.A[0][:, perm]], B=[base.B[0][perm][:, perm]],
                          C=list(base.C), D=[base.D[0][perm]])
    a, b = (Agents(m, 3, InferenceConfig(dtype="float64")) for m in (base, permuted))
    for _ in range(3):
        obs = _obs(base, 3, rng)
        act_a = np.array(a.step(obs))
        b.step(obs)
        b._prev_action[:] = act_a      # same history despite tie-breaking by label order
        np.testing.assert_allclose(b.qs[0], a.qs[0][:, perm], atol=1e-12)
