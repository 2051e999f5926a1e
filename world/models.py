"""Generative models used by the benchmarks, the tests and the demo.

``grid_model(n)`` is the standard ``grid-N`` benchmark model of ``DESIGN.md``: one hidden factor
(position on an n x n grid), two modalities (noisy position; a three-valued resource cue), one
control factor of five actions (stay, up, down, left, right) with deterministic transitions, and
preferences for the cue that says "on the resource". ``random_model`` draws random models with any
number of factors and modalities, for parity and property tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel

ACTIONS = ("stay", "up", "down", "left", "right")
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
CUE_NONE, CUE_NEAR, CUE_ON = 0, 1, 2


def grid_transitions(n: int) -> np.ndarray:
    """Deterministic moves on an n x n grid; moving into a wall stays put. ``(n*n, n*n, 5)``."""
    B = np.zeros((n * n, n * n, len(MOVES)))
    for row in range(n):
        for col in range(n):
            s = row * n + col
            for u, (dr, dc) in enumerate(MOVES):
                r2, c2 = row + dr, col + dc
                if not (0 <= r2 < n and 0 <= c2 < n):
                    r2, c2 = row, col
                B[r2 * n + c2, s, u] = 1.0
    return B


def grid_position_likelihood(n: int, noise: float = 0.1) -> np.ndarray:
    """p(observed cell | true cell): right with 1 - noise, else one of the 4-neighbours."""
    A = np.zeros((n * n, n * n))
    for row in range(n):
        for col in range(n):
            s = row * n + col
            neighbours = [(row + dr) * n + (col + dc) for dr, dc in MOVES[1:]
                          if 0 <= row + dr < n and 0 <= col + dc < n]
            A[s, s] = 1.0 - noise
            for o in neighbours:
                A[o, s] = noise / len(neighbours)
    return A


def grid_resource_cell(n: int) -> tuple[int, int]:
    """Where the grid model believes the resource is: three quarters of the way down and across."""
    return (3 * n) // 4, (3 * n) // 4


def grid_cue_likelihood(n: int, reliability: float = 0.9) -> np.ndarray:
    """p(cue | cell): on the resource, near it (Manhattan distance <= 2), or neither."""
    A = np.zeros((3, n * n))
    rr, rc = grid_resource_cell(n)
    other = (1.0 - reliability) / 2.0
    for row in range(n):
        for col in range(n):
            d = abs(row - rr) + abs(col - rc)
            cue = CUE_ON if d == 0 else CUE_NEAR if d <= 2 else CUE_NONE
            A[:, row * n + col] = other
            A[cue, row * n + col] = reliability
    return A


def grid_model(n: int = 10, noise: float = 0.1, cue_reliability: float = 0.9) -> GenerativeModel:
    """The ``grid-N`` benchmark model (S = O_position = n*n, O_cue = 3, 5 actions)."""
    if n < 2:
        raise WorldError(f"grid size must be >= 2, got {n}")
    A = [grid_position_likelihood(n, noise), grid_cue_likelihood(n, cue_reliability)]
    B = [grid_transitions(n)]
    C = [np.zeros(n * n), np.array([0.0, 1.0, 4.0])]
    D = [np.full(n * n, 1.0 / (n * n))]
    return GenerativeModel(A=A, B=B, C=C, D=D)


def random_model(
    rng: np.random.Generator,
    num_obs: Sequence[int],
    num_states: Sequence[int],
    num_controls: Sequence[int],
    A_factor_list: Sequence[Sequence[int]] | None = None,
    sharpness: float = 1.0,
    deterministic_B: bool = False,
    with_pA: bool = False,
    with_pB: bool = False,
) -> GenerativeModel:
    """A random model. ``sharpness`` < 1 makes A and B peaked, > 1 flat (Dirichlet concentration).

    ``num_controls[f] == 1`` makes factor ``f`` uncontrolled.
    """
    n_factors = len(num_states)
    if A_factor_list is None:
        A_factor_list = [list(range(n_factors)) for _ in num_obs]

    def columns(rows: int, shape: tuple[int, ...]) -> np.ndarray:
        draw = rng.dirichlet(np.full(rows, sharpness), size=shape)      # (*shape, rows)
        return np.moveaxis(draw, -1, 0)

    A = [columns(o, tuple(num_states[f] for f in deps))
         for o, deps in zip(num_obs, A_factor_list, strict=True)]
    B = []
    for s, u in zip(num_states, num_controls, strict=True):
        if deterministic_B:
            b = np.zeros((s, s, u))
            for a in range(u):
                b[rng.integers(0, s, size=s), np.arange(s), a] = 1.0
        else:
            b = columns(s, (s, u))
        B.append(b)
    C = [rng.normal(size=o) for o in num_obs]
    D = [rng.dirichlet(np.ones(s)) for s in num_states]
    pA = [a * rng.uniform(1.0, 5.0) + 0.1 * (a > 0) for a in A] if with_pA else None
    pB = [b * rng.uniform(1.0, 5.0) + 0.1 * (b > 0) for b in B] if with_pB else None
    return GenerativeModel(A=A, B=B, C=C, D=D, pA=pA, pB=pB, A_factor_list=A_factor_list)
