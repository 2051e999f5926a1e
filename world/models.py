"""Generative models used by the benchmarks, the tests and the demo.

``grid_model(n)`` is the standard ``grid-N`` benchmark model of ``DESIGN.md``: one hidden factor
(position on an n x n grid), two modalities (noisy position; a three-valued resource cue), one
control factor of five actions (stay, up, down, left, right) with deterministic transitions, and
preferences for the cue that says "on the resource"; ``grid_model(n, dense=True)`` spreads the
position noise over every cell. ``tmaze_model`` is pymdp's T-maze (its ``TMazeEnv`` and demo
agent); ``epistemic_chain_model`` is pymdp's epistemic (cue) chaining demo. ``random_model`` draws
random models with any number of factors and modalities, for parity and property tests.
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


def grid_position_likelihood(n: int, noise: float = 0.1, dense: bool = False) -> np.ndarray:
    """p(observed cell | true cell): right with 1 - noise, else one of the 4-neighbours
    (``dense``: else any other cell, ``noise / (n*n - 1)`` each, so no entry is zero)."""
    if dense:
        A = np.full((n * n, n * n), noise / (n * n - 1))
        np.fill_diagonal(A, 1.0 - noise)
        return A
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


def grid_model(n: int = 10, noise: float = 0.1, cue_reliability: float = 0.9,
               dense: bool = False) -> GenerativeModel:
    """The ``grid-N`` benchmark model (S = O_position = n*n, O_cue = 3, 5 actions); ``dense``:
    the ``dense-grid-N`` variant, position noise spread over every cell."""
    if n < 2:
        raise WorldError(f"grid size must be >= 2, got {n}")
    A = [grid_position_likelihood(n, noise, dense), grid_cue_likelihood(n, cue_reliability)]
    B = [grid_transitions(n)]
    C = [np.zeros(n * n), np.array([0.0, 1.0, 4.0])]
    D = [np.full(n * n, 1.0 / (n * n))]
    return GenerativeModel(A=A, B=B, C=C, D=D)


# ----------------------------------------------------------------------------------- T-maze
TMAZE_LOCATIONS = ("centre", "left arm", "right arm", "cue")


def tmaze_likelihood(reward_probs: Sequence[float] = (0.98, 0.02)) -> list[np.ndarray]:
    """pymdp 0.0.7.1 ``TMazeEnv``'s A: location ``(4, 4, 2)``, reward (none, reward, loss)
    ``(3, 4, 2)`` and cue ``(2, 4, 2)`` over (location, reward condition)."""
    high, low = (float(p) for p in reward_probs)
    A_loc = np.zeros((4, 4, 2))
    A_rew = np.zeros((3, 4, 2))
    A_cue = np.zeros((2, 4, 2))
    for loc in range(4):
        for ctx in range(2):
            A_loc[loc, loc, ctx] = 1.0
            if loc in (0, 3):                      # centre and cue arm: no reward, ...
                A_rew[0, loc, ctx] = 1.0
                if loc == 0:
                    A_cue[:, loc, ctx] = 0.5       # ... ambiguous cue in the centre
                else:
                    A_cue[ctx, loc, ctx] = 1.0     # ... the cue names the condition
            else:
                win = 1 if loc == ctx + 1 else 2
                A_rew[win, loc, ctx] = high
                A_rew[3 - win, loc, ctx] = low
                A_cue[:, loc, ctx] = 0.5
    return [A_loc, A_rew, A_cue]


def tmaze_transitions() -> list[np.ndarray]:
    """pymdp 0.0.7.1 ``TMazeEnv``'s B: action u moves to location u from anywhere; the reward
    condition never changes (one action)."""
    B_loc = np.zeros((4, 4, 4))
    B_loc[np.arange(4), :, np.arange(4)] = 1.0
    return [B_loc, np.eye(2)[:, :, None]]


def tmaze_model(reward_probs: Sequence[float] = (0.98, 0.02), reward: float = 3.0,
                punishment: float = -3.0) -> GenerativeModel:
    """pymdp's T-maze demo agent: ``TMazeEnv(reward_probs)``'s A and B, location controlled,
    C = (0, ``reward``, ``punishment``) over the reward modality, starting in the centre."""
    if len(reward_probs) != 2 or abs(sum(reward_probs) - 1.0) > 1e-12:
        raise WorldError(f"reward_probs must be two probabilities summing to 1, got "
                         f"{list(reward_probs)}")
    C = [np.zeros(4), np.array([0.0, reward, punishment]), np.zeros(2)]
    D = [np.eye(4)[0], np.full(2, 0.5)]
    return GenerativeModel(A=tmaze_likelihood(reward_probs), B=tmaze_transitions(), C=C, D=D,
                           control_fac_idx=[0])


# -------------------------------------------------------------------------- epistemic chain
CHAIN_ACTIONS = ("up", "down", "left", "right", "stay")
_CHAIN_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))


def epistemic_chain_model(rows: int = 5, cols: int = 7, cue1: tuple[int, int] = (2, 0),
                          cue2_cells: Sequence[tuple[int, int]] = ((0, 2), (1, 3), (3, 3),
                                                                   (4, 2)),
                          reward_cells: Sequence[tuple[int, int]] = ((1, 5), (3, 5)),
                          start: tuple[int, int] = (0, 0)) -> GenerativeModel:
    """pymdp's epistemic (cue) chaining demo: the agent must visit cue 1 to learn where cue 2 is,
    then cue 2 to learn which reward cell holds cheese (the other holds a shock).

    Factors: location (rows x cols, 5 moves), cue-2 location, reward condition (both fixed).
    Modalities: location, cue 1 (null or the cue-2 location), cue 2 (null, top, bottom) and
    reward (null, cheese, shock); C prefers cheese (2) and avoids shocks (-4).
    """
    cells = rows * cols
    K, R = len(cue2_cells), len(reward_cells)

    def idx(cell: tuple[int, int]) -> int:
        return cell[0] * cols + cell[1]

    A_loc = np.eye(cells)
    A_cue1 = np.zeros((K + 1, cells, K))
    A_cue1[0] = 1.0
    A_cue1[0, idx(cue1)] = 0.0
    A_cue1[np.arange(1, K + 1), idx(cue1), np.arange(K)] = 1.0
    A_cue2 = np.zeros((R + 1, cells, K, R))
    A_cue2[0] = 1.0
    for k, cell in enumerate(cue2_cells):
        A_cue2[0, idx(cell), k, :] = 0.0
        A_cue2[np.arange(1, R + 1), idx(cell), k, np.arange(R)] = 1.0
    A_rew = np.zeros((3, cells, R))
    A_rew[0] = 1.0
    for r, cell in enumerate(reward_cells):
        A_rew[:, idx(cell), :] = 0.0
        A_rew[1, idx(cell), r] = 1.0                 # cheese where the condition says
        A_rew[2, idx(cell), [c for c in range(R) if c != r]] = 1.0
    B_loc = np.zeros((cells, cells, len(_CHAIN_MOVES)))
    for s in range(cells):
        r0, c0 = divmod(s, cols)
        for u, (dr, dc) in enumerate(_CHAIN_MOVES):
            r1 = min(max(r0 + dr, 0), rows - 1)
            c1 = min(max(c0 + dc, 0), cols - 1)
            B_loc[r1 * cols + c1, s, u] = 1.0
    C = [np.zeros(cells), np.zeros(K + 1), np.zeros(R + 1), np.array([0.0, 2.0, -4.0])]
    D = [np.eye(cells)[idx(start)], np.full(K, 1.0 / K), np.full(R, 1.0 / R)]
    return GenerativeModel(A=[A_loc, A_cue1, A_cue2, A_rew],
                           B=[B_loc, np.eye(K)[:, :, None], np.eye(R)[:, :, None]], C=C, D=D,
                           A_factor_list=[[0], [0, 1], [0, 1, 2], [0, 2]])


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
