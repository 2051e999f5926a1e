"""Compiled loops behind the worlds' vectorised steps (grid moves, mode-first sampling).

Each does in one pass what a chain of NumPy operations did in several, with the same result
bit for bit: the random draws stay NumPy's (the caller draws them in the same order and
sizes), only the gathers, comparisons and counts around them are compiled. The reasoning is
in docs/architecture.md ("world.grid").
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def mode_first(cols: np.ndarray, u: np.ndarray, mode: np.ndarray, p_mode: np.ndarray,
               out: np.ndarray, miss: np.ndarray) -> int:
    """``out[i] = mode[cols[i]]``; the indices ``i`` with ``u[i] >= p_mode[cols[i]]`` (the
    draws that miss the mode) go to ``miss`` in ascending order; returns how many."""
    n_miss = 0
    for i in range(cols.shape[0]):
        c = cols[i]
        out[i] = mode[c]
        if u[i] >= p_mode[c]:
            miss[n_miss] = i
            n_miss += 1
    return n_miss


@njit(cache=True)
def column_draws(cols: np.ndarray, rows: np.ndarray, u: np.ndarray, idx: np.ndarray,
                 cum: np.ndarray, out: np.ndarray) -> None:
    """``out[rows[j]] = idx[c, k]`` with ``c = cols[rows[j]]`` and ``k`` the number of
    ``cum[c, :]`` entries ``<= u[j]`` (``ColumnSampler.sample`` for the agents ``rows``)."""
    width = cum.shape[1]
    for j in range(rows.shape[0]):
        i = rows[j]
        c = cols[i]
        k = 0
        for w in range(width):
            if cum[c, w] <= u[j]:
                k += 1
        out[i] = idx[c, k]


@njit(cache=True)
def grid_targets(cell: np.ndarray, acts: np.ndarray, moves: np.ndarray, n_moves: int,
                 target: np.ndarray, occupancy: np.ndarray, demand: np.ndarray) -> int:
    """Each agent's target cell ``moves[cell * n_moves + act]`` into ``target``, the agents
    per cell now into ``occupancy`` and the movers per target cell into ``demand`` (both
    zeroed first); returns how many agents move."""
    occupancy[:] = 0
    demand[:] = 0
    moving = 0
    for i in range(cell.shape[0]):
        c = cell[i]
        t = moves[c * n_moves + acts[i]]
        target[i] = t
        occupancy[c] += 1
        if t != c:
            demand[t] += 1
            moving += 1
    return moving


@njit(cache=True)
def refuse_over_capacity(cell: np.ndarray, target: np.ndarray, room: np.ndarray,
                         contested: np.ndarray, offset: int) -> int:
    """Movers into a ``contested`` cell take its ``room`` in turn, from agent ``offset`` on
    and wrapping; the rest stay where they are (``target[i] = cell[i]``). Returns how many
    were refused."""
    n = cell.shape[0]
    taken = np.zeros(room.shape[0], dtype=np.int64)
    refused = 0
    for k in range(n):
        i = k + offset
        if i >= n:
            i -= n
        t = target[i]
        if t != cell[i] and contested[t]:
            if taken[t] >= room[t]:
                target[i] = cell[i]
                refused += 1
            taken[t] += 1
    return refused


@njit(cache=True)
def drain(cell: np.ndarray, cost: np.ndarray, energy: np.ndarray, on_resource: np.ndarray,
          on: np.ndarray) -> int:
    """``energy[i] -= cost[cell[i]]`` for every agent; the agents on a resource cell go to
    ``on`` in ascending order; returns how many."""
    n_on = 0
    for i in range(cell.shape[0]):
        c = cell[i]
        energy[i] -= cost[c]
        if on_resource[c]:
            on[n_on] = i
            n_on += 1
    return n_on


@njit(cache=True)
def finished(cell: np.ndarray, energy: np.ndarray, on_goal: np.ndarray, goals: bool,
             done: np.ndarray, occupancy: np.ndarray) -> tuple[int, int, int]:
    """The agents whose episode ends (energy spent, or on a goal cell when ``goals``) go to
    ``done`` in ascending order, and the others per cell to ``occupancy`` (zeroed first);
    returns ``(how many ended, deaths, goals reached)`` (a death on a goal is a goal)."""
    occupancy[:] = 0
    n_done = deaths = scored = 0
    for i in range(cell.shape[0]):
        c = cell[i]
        if goals and on_goal[c]:
            scored += 1
        elif energy[i] <= 0:
            deaths += 1
        else:
            occupancy[c] += 1
            continue
        done[n_done] = i
        n_done += 1
    return n_done, deaths, scored
