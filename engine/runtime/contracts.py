"""The protocols the engine is driven through: what steps agents and what a world offers."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Stepper(Protocol):
    """Anything that turns observations into actions: ``Agents``, ``Engine``, ``ClusterEngine``."""

    def step(self, obs: np.ndarray) -> np.ndarray:
        """``(n, n_modalities)`` observations -> ``(n, n_factors)`` actions."""
        ...


@runtime_checkable
class WorldLike(Protocol):
    """What ``Engine.run`` drives: observations in, actions out, agent axis first.
    ``world.base.World`` adds the specs, the model and the config a full world describes."""

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode; the first observations ``(n_agents, n_modalities)``."""
        ...

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply ``(n_agents, n_factors)`` actions; the next observations."""
        ...
