"""What the PettingZoo and Gymnasium adapters share: the model, the specs, the step results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.model.generative_model import GenerativeModel
from world.adapters.matching import controlled_factors
from world.base import check_actions


class AdapterBase:
    """What both adapters share: the model, the specs and the per-step result arrays."""

    n_agents: int

    def __init__(self, model: GenerativeModel, n: int,
                 control_factors: Iterable[int] | None) -> None:
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model must be an engine.GenerativeModel, got "
                            f"{type(model).__name__}")
        self._model = model
        self.n_agents = int(n)
        self.control_factors = controlled_factors(model, control_factors)
        self._action_spec = tuple(model.num_controls[f] if f in self.control_factors else 1
                                  for f in range(model.num_factors))
        self._obs = np.zeros((n, model.num_modalities), dtype=np.int64)
        self.final_observations = np.zeros((n, model.num_modalities), dtype=np.int64)
        self.rewards = np.zeros(n, dtype=np.float64)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.done = np.zeros(n, dtype=bool)
        self.reset_mask = np.zeros(n, dtype=bool)
        self.episodes = 0
        self.infos: Any = {}
        self._seed: int | None = None

    @property
    def observation_spec(self) -> tuple[int, ...]:
        """Number of outcomes of each modality (the model's ``num_obs``)."""
        return tuple(self._model.num_obs)

    @property
    def action_spec(self) -> tuple[int, ...]:
        """Number of actions of each factor (1 for a factor the environment does not control)."""
        return self._action_spec

    def model(self) -> GenerativeModel:
        """The generative model given to the adapter."""
        return self._model

    def _clear_step(self) -> None:
        self.rewards[:] = 0.0
        self.terminated[:] = False
        self.truncated[:] = False
        self.done[:] = False
        self.reset_mask[:] = False

    def _components(self, actions: np.ndarray) -> np.ndarray:
        arr = check_actions(actions, self.n_agents, self._action_spec)
        return arr[:, list(self.control_factors)]

    def _need_reset(self, who: str) -> None:
        if self._seed is None:
            raise RuntimeError(f"{who}.step: call reset(seed) first")

