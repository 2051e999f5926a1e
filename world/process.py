"""The generative process of a model: true hidden states moved by B, outcomes drawn from A.

``ModelProcess(model, n, rng)`` keeps one true state per agent; ``observe()`` samples every
modality from the agents' true states and ``advance(actions)`` moves them through B. For the
``grid-N`` model this is the true grid world (walls stop moves). Benchmarks and the demo feed
agents these observations, so beliefs behave as in a real episode.
"""

from __future__ import annotations

import numpy as np

from engine.model.generative_model import GenerativeModel
from world.kernels import column_draws, mode_first


class ColumnSampler:
    """Draws a row from chosen columns of a column-stochastic matrix, vectorised over agents.

    Each column keeps only its non-zero rows (padded to the widest column) with their cumulative
    probabilities, so a draw for N agents costs O(N * widest column), not O(N * rows).
    """

    def __init__(self, matrix: np.ndarray) -> None:
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2:
            raise ValueError(f"ColumnSampler needs a 2-d matrix, got shape {m.shape}")
        width = max(1, int((m > 0).sum(axis=0).max()))
        n_cols = m.shape[1]
        self.idx = np.zeros((n_cols, width), dtype=np.int64)
        self.cum = np.full((n_cols, width), np.inf)
        for c in range(n_cols):
            rows = np.flatnonzero(m[:, c] > 0)
            if rows.size == 0:
                raise ValueError(f"column {c} has no probability mass")
            cum = np.cumsum(m[rows, c])
            cum /= cum[-1]
            cum[-1] = np.inf                  # u < 1 always lands in the column's support
            self.idx[c, :rows.size] = rows
            self.idx[c, rows.size:] = rows[-1]
            self.cum[c, :rows.size] = cum
        self.deterministic = width == 1

    def sample(self, cols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One row index per entry of ``cols``."""
        if self.deterministic:
            return self.idx[cols, 0]
        u = rng.random(cols.shape[0])
        k = (self.cum[cols] <= u[:, None]).sum(axis=1)
        return self.idx[cols, k]


class ModeFirstSampler:
    """Draws a row from chosen columns of a column-stochastic matrix, like ``ColumnSampler``,
    but tries each column's most likely row first: one uniform and two gathers per agent, and
    the ``ColumnSampler`` of the remaining rows only for the agents that miss the mode (about
    ``noise`` of them), several times faster for peaked likelihoods."""

    def __init__(self, matrix: np.ndarray) -> None:
        m = np.asarray(matrix, dtype=np.float64)
        cols = np.arange(m.shape[1])
        self.mode = m.argmax(axis=0)
        self.p_mode = m[self.mode, cols] / m.sum(axis=0)
        rest = m.copy()
        rest[self.mode, cols] = 0.0
        never = rest.sum(axis=0) <= 0.0          # deterministic column: the rest is never drawn
        rest[self.mode[never], cols[never]] = 1.0
        self.rest = ColumnSampler(rest)
        self._u = np.empty(0)
        self._miss = np.empty(0, dtype=np.int64)

    def sample(self, cols: np.ndarray, rng: np.random.Generator,
               out: np.ndarray | None = None) -> np.ndarray:
        """One row index per entry of ``cols`` (int64), into ``out`` when given (an int64
        array of the same length, strided or not); returns it."""
        cols = np.ascontiguousarray(cols, dtype=np.int64)
        n = cols.shape[0]
        if out is None:
            out = np.empty(n, dtype=np.int64)
        if self._u.shape[0] < n:                      # scratch kept between calls
            self._u, self._miss = np.empty(n), np.empty(n, dtype=np.int64)
        n_miss = mode_first(cols, rng.random(n, out=self._u[:n]), self.mode, self.p_mode,
                            out, self._miss)
        if n_miss:
            rows, rest = self._miss[:n_miss], self.rest
            if rest.deterministic:
                out[rows] = rest.idx[cols[rows], 0]
            else:
                column_draws(cols, rows, rng.random(n_miss), rest.idx, rest.cum, out)
        return out


class ModelProcess:
    """The model's own generative process for ``n`` agents: true states, sampled outcomes.

    For ``grid-N`` this is the true grid world: each agent has a true cell, moved by its chosen
    action through ``grid_transitions`` (a move into a wall stays), and observes its position
    through ``A[0][:, cell]`` and the resource cue through ``A[1][:, cell]``.
    """

    def __init__(self, model: GenerativeModel, n: int, rng: np.random.Generator) -> None:
        self.n = int(n)
        self.rng = rng
        self.num_states = tuple(int(s) for s in model.num_states)
        self.num_controls = tuple(int(u) for u in model.num_controls)
        self.state = np.stack([rng.integers(0, s, size=self.n) for s in self.num_states], axis=1)
        self._A = [(ColumnSampler(a.reshape(a.shape[0], -1)), tuple(int(f) for f in deps))
                   for a, deps in zip(model.A, model.A_factor_list, strict=True)]
        # B[f][:, s, u] is column s * U + u of the (S, S * U) reshape
        self._B = [ColumnSampler(b.reshape(b.shape[0], -1)) for b in model.B]
        self._obs = np.empty((self.n, len(self._A)), dtype=np.int64)

    def observe(self) -> np.ndarray:
        """Outcomes at the true states, ``(n, n_modalities)`` int64 (a buffer reused per call)."""
        for m, (sampler, deps) in enumerate(self._A):
            if len(deps) == 1:
                col = self.state[:, deps[0]]
            else:
                col = np.zeros(self.n, dtype=np.int64)
                for f in deps:
                    col = col * self.num_states[f] + self.state[:, f]
            self._obs[:, m] = sampler.sample(col, self.rng)
        return self._obs

    def advance(self, actions: np.ndarray) -> None:
        """Move every agent's true state by its chosen action (``(n, n_factors)`` ints)."""
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n, -1)
        for f, sampler in enumerate(self._B):
            col = self.state[:, f] * self.num_controls[f] + actions[:, f]
            self.state[:, f] = sampler.sample(col, self.rng)


class ProcessWorld:
    """A model's generative process as a world an engine drives: ``reset(seed)``,
    ``step(actions)``, both returning observations ``(n, n_modalities)``."""

    def __init__(self, model: GenerativeModel, n: int) -> None:
        self.model, self.n = model, n

    def reset(self, seed: int) -> np.ndarray:
        self.process = ModelProcess(self.model, self.n, np.random.default_rng(seed))
        return self.process.observe()

    def step(self, actions: np.ndarray) -> np.ndarray:
        self.process.advance(actions)
        return self.process.observe()
