"""agentloop against pymdp 0.0.7.1 on the same models and observations."""

from __future__ import annotations

import numpy as np
import pytest

from engine import InferenceConfig
from engine.kernels.array_step import KERNEL_ENV
from engine.kernels.fused import host_compiler
from tests.pymdp_peer import MemoPeer, PeerMemo, run_side_by_side
from world.models import grid_model, grid_transitions, random_model

pytest.importorskip("pymdp")

# (num_obs, num_states, num_controls, A_factor_list)
RANDOM_SHAPES = [
    ([4], [5], [3], None),                                   # 1 factor, 1 modality
    ([3, 4], [4], [2], None),                                # 1 factor, 2 modalities
    ([3, 4], [3, 2], [2, 1], None),                          # uncontrolled second factor
    ([3, 2, 4], [3, 2, 2], [2, 1, 3], [[0], [1, 2], [0, 2]]),  # A on factor subsets
    ([5, 3], [4, 3], [3, 2], [[1], [0]]),                    # subsets in reverse order
    ([2, 3, 2], [2, 3, 2], [2, 2, 2], None),                 # 3 x 3, all controllable
]


def _configs(dtype: str) -> list[InferenceConfig]:
    return [InferenceConfig(policy_len=length, dtype=dtype) for length in (1, 2, 3)]


@pytest.mark.parametrize("shape_index", range(len(RANDOM_SHAPES)))
@pytest.mark.parametrize("sharpness", [0.1, 1.0, 5.0], ids=["sharp", "medium", "flat"])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_random_models_match_pymdp(shape_index: int, sharpness: float, dtype: str,
                                   tol: float) -> None:
    num_obs, num_states, num_controls, factor_list = RANDOM_SHAPES[shape_index]
    rng = np.random.default_rng(100 * shape_index + int(10 * sharpness))
    model = random_model(rng, num_obs, num_states, num_controls, factor_list,
                         sharpness=sharpness, deterministic_B=shape_index % 2 == 0)
    for config in _configs(dtype):
        steps = 8 if config.policy_len < 3 else 4
        gaps = run_side_by_side(model, config, n_agents=3, steps=steps, rng=rng)
        assert gaps.worst() < tol, (config.policy_len, gaps)
        assert gaps.action_mismatches == 0, gaps


@pytest.mark.parametrize("backend,kernel", [
    ("reference", "array"),
    pytest.param("xp-numpy", "fused", marks=pytest.mark.skipif(
        host_compiler() is None, reason="the fused kernel's host build needs a C++ compiler"))])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_other_backends_match_pymdp(monkeypatch: pytest.MonkeyPatch, backend: str, kernel: str,
                                    dtype: str, tol: float) -> None:
    """The reference, and the fused CUDA kernel's host build (``kernel="fused"``), on a model
    with A on factor subsets and on a grid."""
    monkeypatch.setenv(KERNEL_ENV, kernel)
    rng = np.random.default_rng(5)
    subsets = random_model(rng, [3, 2, 4], [3, 2, 2], [2, 1, 3], [[0], [1, 2], [0, 2]])
    for model, n_agents, steps in ((subsets, 2, 6), (grid_model(5), 3, 8)):
        gaps = run_side_by_side(model, InferenceConfig(policy_len=2, dtype=dtype), n_agents,
                                steps, rng, backend=backend)
        assert gaps.worst() < tol, gaps
        assert gaps.action_mismatches == 0


def test_information_gain_terms_can_be_switched_off() -> None:
    rng = np.random.default_rng(9)
    model = random_model(rng, [3, 4], [3, 2], [2, 2])
    for config in (InferenceConfig(use_utility=False, dtype="float64"),
                   InferenceConfig(use_states_info_gain=False, dtype="float64", policy_len=2),
                   InferenceConfig(gamma=2.5, dtype="float64", sampling_mode="full")):
        gaps = run_side_by_side(model, config, 2, 6, rng)
        assert gaps.worst() < 1e-10, (config, gaps)
        assert gaps.action_mismatches == 0


def _grid_world_observer(model, n_agents: int, rng: np.random.Generator):  # noqa: ANN001, ANN202
    """True positions moved by the agents' actions, observed through the model's own A."""
    B = grid_transitions(int(round(np.sqrt(model.num_states[0]))))
    cells = rng.integers(0, model.num_states[0], size=n_agents)
    A_pos, A_cue = model.A

    def observe(t: int, actions: np.ndarray) -> np.ndarray:
        nonlocal cells
        if t > 0:
            cells = np.argmax(B[:, cells, actions[:, 0]], axis=0)
        pos = [rng.choice(A_pos.shape[0], p=A_pos[:, c]) for c in cells]
        cue = [rng.choice(A_cue.shape[0], p=A_cue[:, c]) for c in cells]
        return np.stack([pos, cue], axis=1)

    return observe


@pytest.mark.parametrize("n,policy_len,steps", [(5, 1, 200), (10, 1, 200), (5, 3, 25)])
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_grid_episodes_match_pymdp(n: int, policy_len: int, steps: int, dtype: str,
                                   tol: float) -> None:
    """Deterministic actions are identical over whole episodes except at exact grid ties."""
    rng = np.random.default_rng(n * 10 + policy_len)
    model = grid_model(n)
    observe = _grid_world_observer(model, 2, rng)
    gaps = run_side_by_side(model, InferenceConfig(policy_len=policy_len, dtype=dtype), 2,
                            steps, rng, observe=observe)
    assert gaps.worst() < tol, gaps
    assert gaps.action_mismatches == 0, gaps


@pytest.mark.parametrize("backend,dtype,tol", [
    ("numba", "float64", 1e-10), ("numba", "float32", 1e-4), ("reference", "float64", 1e-10),
    ("xp-numpy", "float64", 1e-10), ("xp-numpy", "float32", 1e-4)])
@pytest.mark.parametrize("learn_A,learn_B,param_gain,subset", [
    (True, False, False, False), (False, True, False, False), (True, True, True, False),
    (False, False, True, False), (True, True, True, True)])
def test_learning_matches_pymdp(backend: str, learn_A: bool, learn_B: bool, param_gain: bool,
                                subset: bool, dtype: str, tol: float) -> None:
    """Dirichlet learning of pA/pB and parameter information gain, as pymdp's update_A/B."""
    rng = np.random.default_rng(11)
    model = random_model(rng, [3, 4], [3, 2], [2, 2], with_pA=True, with_pB=True)
    config = InferenceConfig(learn_A=learn_A, learn_B=learn_B, use_param_info_gain=param_gain,
                             lr_pA=0.7, lr_pB=1.3, dtype=dtype, policy_len=2,
                             modalities_to_learn=(1,) if subset else "all",
                             factors_to_learn=(0,) if subset else "all")
    gaps = run_side_by_side(model, config, 2, 10, rng, backend=backend)
    assert gaps.worst() < tol, gaps
    assert gaps.action_mismatches == 0


@pytest.mark.parametrize("backend", ["numba", "reference", "xp-numpy"])
def test_learning_after_the_action_matches_pymdps_demo_order(backend: str) -> None:
    """``learn_before_policies=False``: G and q(pi) use the parameters from before the
    step's update, as in pymdp's T-maze learning demo (update_A after sample_action)."""
    rng = np.random.default_rng(12)
    model = random_model(rng, [3, 4], [3, 2], [2, 2], with_pA=True, with_pB=True)
    config = InferenceConfig(learn_A=True, learn_B=True, lr_pA=0.7, lr_pB=1.3,
                             dtype="float64", policy_len=2, learn_before_policies=False)
    gaps = run_side_by_side(model, config, 2, 10, rng, backend=backend)
    assert gaps.worst() < 1e-10, gaps
    assert gaps.action_mismatches == 0
    before = run_side_by_side(model, config.replace(learn_before_policies=True), 2, 10,
                              np.random.default_rng(12), backend=backend)
    assert before.worst() < 1e-10


def test_remembered_pymdp_ticks_equal_a_fresh_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """``tests/pymdp_peer.py`` remembers pymdp's ticks per history: a peer that repeats a
    history reads them, one whose history branches off (another action handed at tick 2) is
    computed by an Agent rebuilt from its history; both equal an Agent stepped from scratch."""
    monkeypatch.setattr(PeerMemo, "_roots", {})
    model = random_model(np.random.default_rng(21), [3, 4], [3, 2], [2, 2])
    config = InferenceConfig(policy_len=2, dtype="float64")
    obs = [np.array([t % 3, (2 * t + 1) % 4]) for t in range(6)]
    first = [np.array([t % 2, (t // 2) % 2]) for t in range(6)]
    branch = [*first[:2], 1 - first[2], *first[3:]]
    for handed, computed in ((first, True), (first, False), (branch, True)):
        peer, fresh = MemoPeer(model, config), model.to_pymdp(config)
        for o, a in zip(obs, handed, strict=True):
            tick = peer.step(o, a)
            qs = fresh.infer_states([int(x) for x in o])
            q_pi, G = fresh.infer_policies()
            action = fresh.sample_action().astype(np.int64)
            fresh.action = a.astype(np.float64)
            for got, want in [*zip(tick.qs, qs, strict=True), (tick.q_pi, q_pi), (tick.G, G),
                              (tick.action, action)]:
                np.testing.assert_array_equal(got, want)
        assert (peer.agent is not None) == computed   # a live Agent only where computed
