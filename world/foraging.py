"""The foraging world: agents on an N x N grid search for food in whichever patch holds it now.

Two hidden-state factors (the agent's cell, and the hidden, shared context saying which patch
holds food, switching each tick with probability ``switch_prob``) and three modalities
(position, scent of food, a hint at the signpost). The agents' model
(:meth:`ForagingWorld.model`) is exactly this process; the modalities, preferences and tick
order are in docs/architecture.md ("world.foraging"). Same seed and actions, same observations.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from engine.model.generative_model import GenerativeModel
from engine.runtime.sizing import ModelShape
from world.base import check_actions
from world.grid import AgentCells, check_param, move_table
from world.models import MOVES, grid_position_likelihood, grid_transitions
from world.process import ModeFirstSampler


def default_patches(size: int, n_patches: int) -> list[tuple[int, int]]:
    """Patch cells: (N/4, 3N/4), (3N/4, N/4), then (N/4, N/4) and (3N/4, 3N/4)."""
    q, tq = size // 4, size - 1 - size // 4
    return [(q, tq), (tq, q), (q, q), (tq, tq)][:n_patches]


def scent_likelihood(size: int, patches: list[tuple[int, int]], near_radius: int,
                     reliability: float) -> np.ndarray:
    """``(near_radius + 2, N*N, K)`` p(scent | cell, context): level ``max(0, r + 1 - d)``."""
    levels = near_radius + 2
    rows, cols = np.divmod(np.arange(size * size), size)
    A = np.full((levels, size * size, len(patches)), (1.0 - reliability) / (levels - 1))
    for k, (pr, pc) in enumerate(patches):
        dist = np.abs(rows - pr) + np.abs(cols - pc)
        A[np.maximum(0, near_radius + 1 - dist), np.arange(size * size), k] = reliability
    return A


def scent_preferences(near_radius: int) -> np.ndarray:
    """C over scent levels: the level itself, and ``near_radius + 3`` for food."""
    C = np.arange(near_radius + 2, dtype=np.float64)
    C[-1] = near_radius + 3.0
    return C


def hint_likelihood(size: int, n_patches: int, signpost: int, reliability: float) -> np.ndarray:
    """``(K, N*N, K)`` p(hint | cell, context): informative on the signpost only."""
    A = np.full((n_patches, size * size, n_patches), 1.0 / n_patches)
    other = (1.0 - reliability) / (n_patches - 1)
    A[:, signpost, :] = other
    A[np.arange(n_patches), signpost, np.arange(n_patches)] = reliability
    return A


def context_transitions(n_patches: int, switch_prob: float) -> np.ndarray:
    """``(K, K, 1)``: stay with ``1 - switch_prob``, else move to another patch uniformly."""
    B = np.full((n_patches, n_patches), switch_prob / (n_patches - 1))
    np.fill_diagonal(B, 1.0 - switch_prob)
    return B[:, :, None]


class ForagingWorld(AgentCells):
    """Agents searching for food whose patch (the hidden context) switches now and then.

    Observations int64 ``(n_agents, 3)``: observed cell, scent (0 none .. ``near_radius + 1``
    on the food) and hint; actions ``(n_agents, 2)``: a move (stay, up, down, left, right) and
    0 for the uncontrolled context.

    Args:
        size: grid side N (>= 3).
        n_agents: number of agents (>= 1).
        n_patches: number of patches, i.e. contexts (2..4).
        switch_prob: probability per tick that food moves to another patch.
        noise: probability that the observed cell is a neighbour of the true one.
        scent_reliability: probability that the scent is the true level.
        hint_reliability: probability that the signpost names the active patch.
        near_radius: Manhattan distance over which food can be smelt (>= 1).
        seed: seed of the first episode (``reset(seed)`` starts another).
    """

    name = "foraging"

    def __init__(self, size: int = 5, n_agents: int = 1000, *, n_patches: int = 2,
                 switch_prob: float = 0.02, noise: float = 0.1, scent_reliability: float = 0.9,
                 hint_reliability: float = 0.9, near_radius: int = 3, seed: int = 0) -> None:
        check = functools.partial(check_param, "ForagingWorld")
        check("size", size, 3, integer=True)
        check("n_agents", n_agents, 1, integer=True)
        check("n_patches", n_patches, 2, 4, integer=True)
        check("switch_prob", switch_prob, 0.0, 1.0)
        check("noise", noise, 0.0, 1.0, high_open=True)
        check("scent_reliability", scent_reliability, 0.0, 1.0)
        check("hint_reliability", hint_reliability, 0.0, 1.0)
        check("near_radius", near_radius, 1, integer=True)
        check("seed", seed, 0, integer=True)
        self.size, self.n_agents = int(size), int(n_agents)
        self.n_cells = self.size * self.size
        self.n_patches = int(n_patches)
        self._params: dict[str, Any] = dict(
            n_patches=self.n_patches, switch_prob=float(switch_prob), noise=float(noise),
            scent_reliability=float(scent_reliability), hint_reliability=float(hint_reliability),
            near_radius=int(near_radius))
        self.patches = default_patches(self.size, self.n_patches)
        self._patch_cells = np.array([r * self.size + c for r, c in self.patches])
        self.signpost = (self.size // 2) * self.size + self.size // 2
        self._moves = move_table(np.zeros((self.size, self.size), dtype=np.int8)).ravel()
        self._model = self._build_model()
        self._samplers = [ModeFirstSampler(a.reshape(a.shape[0], -1)) for a in self._model.A]
        self.reset(int(seed))

    @staticmethod
    def model_shape(size: int, n_patches: int = 2, near_radius: int = 3) -> ModelShape:
        """The sizes of the model :meth:`_build_model` gives, without building it."""
        cells, levels = int(size) * int(size), int(near_radius) + 2
        return ModelShape((cells, n_patches), (cells, levels, n_patches), (len(MOVES), 1),
                          ((0,), (0, 1), (0, 1)), (0,),
                          B_nonzeros=cells * len(MOVES) + n_patches * n_patches,
                          po_nonzeros=cells * n_patches * 5 * levels * n_patches, built=False)

    def _build_model(self) -> GenerativeModel:
        p = self._params
        A = [grid_position_likelihood(self.size, p["noise"]),
             scent_likelihood(self.size, self.patches, p["near_radius"],
                              p["scent_reliability"]),
             hint_likelihood(self.size, self.n_patches, self.signpost, p["hint_reliability"])]
        B = [grid_transitions(self.size), context_transitions(self.n_patches, p["switch_prob"])]
        C = [np.zeros(self.n_cells), scent_preferences(p["near_radius"]),
             np.zeros(self.n_patches)]
        D = [np.full(self.n_cells, 1.0 / self.n_cells),
             np.full(self.n_patches, 1.0 / self.n_patches)]
        return GenerativeModel(A=A, B=B, C=C, D=D, A_factor_list=[[0], [0, 1], [0, 1]])

    # ---------------------------------------------------------------------------- protocol
    @property
    def observation_spec(self) -> tuple[int, ...]:
        """(cells, near_radius + 2, n_patches): observed cell, scent, hint."""
        return (self.n_cells, self._params["near_radius"] + 2, self.n_patches)

    @property
    def action_spec(self) -> tuple[int, ...]:
        """(5, 1): a move, and the uncontrolled context."""
        return (len(MOVES), 1)

    def model(self) -> GenerativeModel:
        """The agents' generative model: two factors (cell, context), three modalities."""
        return self._model

    def config(self) -> dict[str, Any]:
        """JSON-ready parameters that rebuild this world."""
        return {"name": self.name, "size": self.size, "n_agents": self.n_agents,
                **self._params, "seed": self.seed}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Place agents uniformly at random, draw the context; the first observations."""
        self.seed = self.seed if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._cell = self._rng.integers(0, self.n_cells, size=self.n_agents)
        self._context = int(self._rng.integers(self.n_patches))
        self._tick = 0
        self._switches = 0
        self._on_food = 0
        self._food_total = 0
        return self._observe()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply ``(n_agents, 2)`` actions (move, 0); the next observations."""
        acts = check_actions(actions, self.n_agents, self.action_spec)
        self._tick += 1
        self._cell = self._moves[self._cell * len(MOVES) + acts[:, 0]]
        if self._rng.random() < self._params["switch_prob"]:
            self._context = int((self._context + self._rng.integers(1, self.n_patches))
                                % self.n_patches)
            self._switches += 1
        self._on_food = int(np.count_nonzero(self._cell == self._patch_cells[self._context]))
        self._food_total += self._on_food
        return self._observe()

    def _observe(self) -> np.ndarray:
        obs = np.empty((self.n_agents, 3), dtype=np.int64)
        obs[:, 0] = self._samplers[0].sample(self._cell, self._rng)
        joint = self._cell * self.n_patches + self._context    # column of A[m] over (cell, ctx)
        obs[:, 1] = self._samplers[1].sample(joint, self._rng)
        obs[:, 2] = self._samplers[2].sample(joint, self._rng)
        return obs

    # --------------------------------------------------------------------------- inspection
    @property
    def context(self) -> int:
        """The patch that holds food now."""
        return self._context

    def grid_layers(self) -> dict[str, np.ndarray]:
        """``agents`` per cell, then ``food``: 1 on the patch that holds food now, 2 on the
        other patches, 3 on the signpost, 0 elsewhere."""
        marks = np.zeros(self.n_cells, dtype=np.uint8)
        marks[self._patch_cells] = 2
        marks[self._patch_cells[self._context]] = 1
        marks[self.signpost] = 3
        return {"agents": self.occupancy(), "food": marks.reshape(self.size, self.size)}

    def stats(self) -> dict[str, Any]:
        """JSON-ready counts: ``tick``, ``n_agents``, ``context``, ``switches_total``,
        ``on_food`` (agents on the active patch this tick), ``food_total`` (agent-ticks on
        food since reset) and ``at_signpost``."""
        return {"tick": self._tick, "n_agents": self.n_agents, "context": self._context,
                "switches_total": self._switches, "on_food": self._on_food,
                "food_total": self._food_total,
                "at_signpost": int(np.count_nonzero(self._cell == self.signpost))}
