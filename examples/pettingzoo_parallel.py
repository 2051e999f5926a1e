"""A PettingZoo parallel environment driven by agentloop agents (``world.adapters``).

``Corridor`` is a tiny ``ParallelEnv`` written here (PettingZoo's own environments need pygame
and other extras): each agent walks its own corridor of cells from the middle towards a goal
end drawn at reset, and sees its cell, a cue naming the goal's side, and whether it is at the
goal. The agents' model has two hidden factors (cell, goal side) and prefers being at the goal;
``run_pettingzoo`` maps the spaces to the model and runs the episodes. Run:
``python examples/pettingzoo_parallel.py`` (needs ``pip install -e '.[adapters]'``).
"""

import functools
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test

from engine import GenerativeModel, InferenceConfig
from world.adapters import run_pettingzoo

LENGTH = 5                  # cells per corridor; agents start in the middle
MOVES = (-1, 0, 1)          # action i moves by MOVES[i]
STEPS = 120


class Corridor(ParallelEnv):
    """Observation (cell, goal side, at goal) as a MultiDiscrete; action a move; reward 1 and
    done on reaching the goal; truncated after ``max_cycles`` steps."""

    metadata = {"name": "corridor_v0", "render_modes": []}

    def __init__(self, n_agents: int = 4, max_cycles: int = 10) -> None:
        self.possible_agents = [f"walker_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.max_cycles = max_cycles
        self._rng = np.random.default_rng()

    @functools.cache  # noqa: B019 - PettingZoo expects the same space object each time
    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.MultiDiscrete([LENGTH, 2, 2])

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(len(MOVES))

    def _observe(self, agent: str) -> np.ndarray:
        goal = 0 if self._side[agent] == 0 else LENGTH - 1
        return np.array([self._cell[agent], self._side[agent], self._cell[agent] == goal],
                        dtype=np.int64)

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._cell = dict.fromkeys(self.agents, LENGTH // 2)
        self._side = {a: int(self._rng.integers(2)) for a in self.agents}
        self._t = 0
        return {a: self._observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        obs, rewards, terminated, truncated, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            self._cell[a] = int(np.clip(self._cell[a] + MOVES[int(actions[a])], 0, LENGTH - 1))
            obs[a] = self._observe(a)
            rewards[a] = float(obs[a][2])
            terminated[a] = bool(obs[a][2])
            truncated[a] = self._t >= self.max_cycles
            infos[a] = {}
        self.agents = [a for a in self.agents if not (terminated[a] or truncated[a])]
        return obs, rewards, terminated, truncated, infos


def corridor_model() -> GenerativeModel:
    """Factors (cell, goal side); modalities (cell, cue, at goal); at goal is preferred."""
    A_goal = np.zeros((2, LENGTH, 2))                 # P(at goal | cell, side)
    A_goal[0] = 1.0
    for side, cell in ((0, 0), (1, LENGTH - 1)):
        A_goal[:, cell, side] = [0.0, 1.0]
    B_cell = np.zeros((LENGTH, LENGTH, len(MOVES)))
    for cell in range(LENGTH):
        for u, move in enumerate(MOVES):
            B_cell[int(np.clip(cell + move, 0, LENGTH - 1)), cell, u] = 1.0
    return GenerativeModel(
        A=[np.eye(LENGTH), np.eye(2), A_goal], A_factor_list=[[0], [1], [0, 1]],
        B=[B_cell, np.eye(2)[:, :, None]],             # the goal side never changes
        C=[np.zeros(LENGTH), np.zeros(2), np.array([0.0, 4.0])],
        D=[np.eye(LENGTH)[LENGTH // 2], np.full(2, 0.5)])


class RandomMoves:
    """The baseline: a random move for every agent (factor 1, the goal side, has one action)."""

    def __init__(self, n: int) -> None:
        self.n, self.rng = n, np.random.default_rng(0)

    def step(self, obs: np.ndarray) -> np.ndarray:
        moves = self.rng.integers(0, len(MOVES), size=(self.n, 1))
        return np.hstack([moves, np.zeros_like(moves)])


parallel_api_test(Corridor(), num_cycles=20)          # PettingZoo's own API check
env, model = Corridor(), corridor_model()
agents = run_pettingzoo(env, model, steps=STEPS, config=InferenceConfig(policy_len=2))
random = run_pettingzoo(env, model, steps=STEPS, stepper=RandomMoves(len(env.possible_agents)))
print(f"{len(env.possible_agents)} agents, {STEPS} steps of corridor_v0")
print(f"agentloop agents: {agents.episodes} episodes, rewards {agents.total_reward}")
print(f"random moves:     {random.episodes} episodes, rewards {random.total_reward}")
