"""The benchmark zoo (``perf.models``): every model builds and validates, has the structure its
description promises, and agentloop matches pymdp 0.0.7.1 on it (float64, policy_len 1, 2 steps,
observations from the model's own generative process)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import GenerativeModel, InferenceConfig
from perf.models import ENTRIES, MODELS, STANDARD_MODELS, ZOO, model_by_name, policy_lens_of
from tests.pymdp_peer import run_side_by_side
from world.models import epistemic_chain_model, grid_model, tmaze_model
from world.process import ModelProcess

ISSUE_ZOO = {"grid-10", "grid-20", "dense-grid-10", "dense-grid-20", "tmaze", "multi-3x3",
             "multi-modal-4", "epistemic-chain", "world-grid", "world-foraging"}


def test_zoo_names_and_policy_lengths() -> None:
    assert set(ZOO) == ISSUE_ZOO
    assert "grid-5" in MODELS and "grid-5" not in ZOO
    assert set(STANDARD_MODELS) == {"grid-5", "grid-10", "grid-20"}
    assert policy_lens_of("epistemic-chain") == (4,)
    assert all(policy_lens_of(n) == (1, 3) for n in ZOO if n != "epistemic-chain")
    with pytest.raises(KeyError, match="unknown benchmark model 'nope'"):
        policy_lens_of("nope")
    with pytest.raises(KeyError, match="known: grid-5"):
        model_by_name("dense-grid-7")
    assert all(ENTRIES[n].description for n in MODELS)


@pytest.mark.parametrize("name", sorted(ISSUE_ZOO))
def test_every_zoo_model_builds_validates_and_is_deterministic(name: str) -> None:
    model = model_by_name(name)
    assert isinstance(model, GenerativeModel)
    assert model is MODELS[name]                                    # built once
    again = ENTRIES[name].build()
    assert again.to_npz_bytes() == model.to_npz_bytes()             # fixed seeds
    GenerativeModel(A=model.A, B=model.B, C=model.C, D=model.D,      # re-validates
                    A_factor_list=model.A_factor_list, control_fac_idx=model.control_fac_idx)


@pytest.mark.parametrize("n", [10, 20])
def test_dense_grid_has_no_zero_in_A(n: int) -> None:
    model = model_by_name(f"dense-grid-{n}")
    A = model.A[0]
    assert all((a > 0).all() for a in model.A)
    assert np.allclose(np.diag(A), 0.9)
    off = A[~np.eye(n * n, dtype=bool)]
    assert np.allclose(off, 0.1 / (n * n - 1))
    sparse = model_by_name(f"grid-{n}")
    assert np.array_equal(model.B[0], sparse.B[0]) and np.array_equal(model.A[1], sparse.A[1])
    assert (sparse.A[0] > 0).sum(axis=0).max() == 5                 # the sparse one stays sparse
    assert np.array_equal(grid_model(n, dense=True).A[0], A)


@pytest.mark.parametrize("reward_probs", [(0.98, 0.02), (0.8, 0.2)])
def test_tmaze_equals_pymdp_tmaze_env(reward_probs: tuple[float, float]) -> None:
    from pymdp.envs import TMazeEnv

    env = TMazeEnv(reward_probs=list(reward_probs))
    ours = tmaze_model(reward_probs)
    for a, theirs in zip(ours.A, env.get_likelihood_dist(), strict=True):
        assert np.array_equal(a, theirs)
    for b, theirs in zip(ours.B, env.get_transition_dist(), strict=True):
        assert np.array_equal(b, theirs)
    assert ours.num_states == (4, 2) and ours.num_obs == (4, 3, 2)
    assert ours.control_fac_idx == (0,) and ours.num_controls == (4, 1)
    assert np.array_equal(ours.C[1], [0.0, 3.0, -3.0]) and np.array_equal(ours.D[0], np.eye(4)[0])
    if reward_probs == (0.98, 0.02):                                 # the zoo's T-maze
        assert model_by_name("tmaze").to_npz_bytes() == ours.to_npz_bytes()


def _demo_chain_A() -> list[np.ndarray]:
    """pymdp's cue-chaining notebook, cell by cell (5 x 7 grid, full A over every factor)."""
    dims, cue1 = (5, 7), (2, 0)
    cue2_locs, rew_locs = [(0, 2), (1, 3), (3, 3), (4, 2)], [(1, 5), (3, 5)]
    loc_list = [(r, c) for r in range(dims[0]) for c in range(dims[1])]
    num_states = [35, 4, 2]
    A = [np.zeros([o, *num_states]) for o in (35, 5, 3, 3)]
    A[0] = np.tile(np.expand_dims(np.eye(35), (-2, -1)), (1, 1, 4, 2))
    A[1][0] = 1.0
    for i in range(4):
        A[1][0, loc_list.index(cue1), i, :] = 0.0
        A[1][i + 1, loc_list.index(cue1), i, :] = 1.0
    A[2][0] = 1.0
    for i, loc in enumerate(cue2_locs):
        A[2][0, loc_list.index(loc), i, :] = 0.0
        A[2][1, loc_list.index(loc), i, 0] = 1.0
        A[2][2, loc_list.index(loc), i, 1] = 1.0
    A[3][0] = 1.0
    top, bottom = loc_list.index(rew_locs[0]), loc_list.index(rew_locs[1])
    A[3][0, top] = 0.0
    A[3][1, top, :, 0] = 1.0
    A[3][2, top, :, 1] = 1.0
    A[3][0, bottom] = 0.0
    A[3][1, bottom, :, 1] = 1.0
    A[3][2, bottom, :, 0] = 1.0
    return A


def test_epistemic_chain_is_pymdps_demo() -> None:
    model = model_by_name("epistemic-chain")
    assert model.num_states == (35, 4, 2) and model.num_obs == (35, 5, 3, 3)
    assert model.num_controls == (5, 1, 1) and model.control_fac_idx == (0,)
    for ours, demo in zip(model.full_A(), _demo_chain_A(), strict=True):
        assert np.array_equal(ours, demo)
    B = model.B[0]
    up, down, left, right, stay = range(5)
    assert B[0, 7, up] == 1 and B[14, 7, down] == 1 and B[0, 0, left] == 1
    assert B[1, 0, right] == 1 and np.array_equal(B[:, :, stay], np.eye(35))
    assert np.array_equal(model.C[3], [0.0, 2.0, -4.0]) and model.D[0][0] == 1.0
    assert model.policies_for(4).shape[0] == 625
    assert epistemic_chain_model().to_npz_bytes() == model.to_npz_bytes()


def test_multi_modal_4_has_four_dense_modalities() -> None:
    model = model_by_name("multi-modal-4")
    assert model.num_modalities == 4 and len(model.num_states) == 2
    assert all(6 <= o <= 12 for o in model.num_obs)
    assert 5_000 <= int(np.prod(model.num_obs)) <= 20_000
    assert model.control_fac_idx == (0,) and model.num_controls[1] == 1
    assert all((a > 0).all() for a in model.A)


def test_world_models_are_the_worlds_own() -> None:
    from world.foraging import ForagingWorld
    from world.grid import GridWorld

    for name, world in (("world-grid", GridWorld(10, 3)), ("world-foraging",
                                                          ForagingWorld(10, 3))):
        assert model_by_name(name).to_npz_bytes() == world.model().to_npz_bytes()
    assert model_by_name("world-foraging").num_states == (100, 2)


# ------------------------------------------------------------------------------- parity
def _process_observer(model: GenerativeModel, n: int):  # noqa: ANN202
    world = ModelProcess(model, n, np.random.default_rng(11))

    def observe(t: int, actions: np.ndarray) -> np.ndarray:
        if t:
            world.advance(actions)
        return world.observe().copy()
    return observe


@pytest.mark.parametrize("name", sorted(ISSUE_ZOO))
def test_zoo_parity_with_pymdp_float64(name: str) -> None:
    model = model_by_name(name)
    n = 2 if int(np.prod(model.num_obs)) * int(np.prod(model.num_states)) > 100_000 else 3
    config = InferenceConfig(policy_len=1, dtype="float64")
    gap = run_side_by_side(model, config, n, 2, np.random.default_rng(0),
                           observe=_process_observer(model, n))
    assert gap.worst() <= 1e-10, (name, gap)
    assert gap.action_mismatches == 0, (name, gap)
