"""The information gain's three paths (sparse, dense, split) against pymdp 0.0.7.1, and the
layout's choice between them."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from engine import GenerativeModel, InferenceConfig
from engine.kernels.numba.vector_math import EXP_LOWEST, vexp, vlog
from engine.model.layout import layout_of
from tests.pymdp_peer import run_side_by_side
from world.models import grid_cue_likelihood, grid_model, grid_transitions, random_model

pytest.importorskip("pymdp")


def noisy_grid(n: int, noise: float = 0.1) -> GenerativeModel:
    """The grid with its position noise spread over every cell (every entry of A non-zero)."""
    s = n * n
    position = np.full((s, s), noise / (s - 1))
    np.fill_diagonal(position, 1.0 - noise)
    return GenerativeModel(A=[position, grid_cue_likelihood(n)], B=[grid_transitions(n)],
                           C=[np.zeros(s), np.array([0.0, 1.0, 4.0])], D=[np.full(s, 1 / s)])


def two_factor_split() -> GenerativeModel:
    """Two factors; the first modality reads both and is a constant plus one entry per column."""
    rng = np.random.default_rng(3)
    model = random_model(rng, [40, 3], [4, 3], [3, 2], [[0, 1], [1]])
    peaked = np.full((40, 4, 3), 0.2 / 39)
    for s0 in range(4):
        for s1 in range(3):
            peaked[(s0 * 7 + s1 * 5) % 40, s0, s1] = 0.8
    return GenerativeModel(A=[peaked, model.A[1]], B=model.B, C=model.C, D=model.D,
                           A_factor_list=[[0, 1], [1]])


CASES = {
    "sparse-grid": (lambda: grid_model(5), "sparse"),
    "noisy-grid": (lambda: noisy_grid(5), "split"),
    "random-one-factor": (lambda: random_model(np.random.default_rng(1), [4, 3], [6], [3],
                                               deterministic_B=True), "dense"),
    "random-two-factor": (lambda: random_model(np.random.default_rng(2), [3, 4], [3, 2],
                                               [2, 2]), "dense"),
    "two-factor-split": (two_factor_split, "split"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layout_chooses_the_path(name: str) -> None:
    build, path = CASES[name]
    layout = layout_of(build(), InferenceConfig(policy_len=1))
    assert layout.gain_path == path, layout.gain_path_reason()
    assert layout.gain_path_reason().startswith(path)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_every_path_matches_pymdp(name: str, dtype: str, tol: float) -> None:
    model = CASES[name][0]()
    rng = np.random.default_rng(len(name))
    for policy_len, steps in ((1, 6), (2, 4)):
        gaps = run_side_by_side(model, InferenceConfig(policy_len=policy_len, dtype=dtype), 3,
                                steps, rng)
        assert gaps.worst() < tol, (policy_len, gaps)
        assert gaps.action_mismatches == 0, gaps


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _vlog_all(x, out):  # noqa: ANN001, ANN202
    for i in range(x.shape[0]):
        out[i] = vlog(x[i])


def test_vector_log_is_within_one_ulp() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([10.0 ** rng.uniform(-16, 0, 200_000), rng.uniform(0.5, 2.0, 100_000),
                        [1.0, 1e-16, 0.5, 2.0, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2)]])
    out = np.empty_like(x)
    _vlog_all(x, out)
    exact = np.log(x)
    assert np.all(np.abs(out - exact) <= np.spacing(np.abs(exact)) + 1e-300)


@njit(cache=True, error_model="numpy")
def _vexp_all(x, out):  # noqa: ANN001, ANN202
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


def test_vector_exp_is_within_one_ulp() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(EXP_LOWEST, 0.0, 200_000), rng.uniform(-1.0, 1.0, 100_000),
                        rng.uniform(0.0, 709.0, 10_000),
                        [0.0, -0.0, EXP_LOWEST, 709.0, 0.5 * np.log(2), -0.5 * np.log(2)]])
    out = np.empty_like(x)
    _vexp_all(x, out)
    exact = np.exp(x)
    assert np.all(np.abs(out - exact) <= np.spacing(exact))
    edges = np.array([np.nan, np.inf, -np.inf, 710.0, EXP_LOWEST - 1.0])
    out = np.empty_like(edges)
    _vexp_all(edges, out)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0.0 and out[3] == np.inf
    assert out[4] == 0.0
