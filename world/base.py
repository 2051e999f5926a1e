"""The ``World`` protocol: what an agentloop engine drives, vectorised over agents.

A world holds ``n_agents`` agents. ``reset(seed)`` starts an episode and returns the first
observations; ``step(actions)`` applies one action per agent and control factor and returns the
next observations. Arrays have the agent axis first:

- observations: int64 ``(n_agents, n_modalities)``, ``[i, m]`` in ``range(observation_spec[m])``
- actions: int ``(n_agents, n_factors)``, entry ``[i, f]`` in ``range(action_spec[f])``

``model()`` returns the generative model the agents use in this world: its modalities match
``observation_spec`` and its factors ``action_spec`` (uncontrolled factors have one action).
``config()`` describes the world (name, size, seed, parameters) as JSON-ready values, for the tick
log and replay. A world never imports ``engine`` internals beyond ``GenerativeModel``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.model.generative_model import GenerativeModel


@runtime_checkable
class World(Protocol):
    """A multi-agent environment stepped in lockstep with the engine's tick."""

    n_agents: int

    @property
    def observation_spec(self) -> tuple[int, ...]:
        """Number of outcomes of each observation modality."""
        ...

    @property
    def action_spec(self) -> tuple[int, ...]:
        """Number of actions of each hidden-state factor (1 for an uncontrolled factor)."""
        ...

    def model(self) -> GenerativeModel:
        """The generative model the agents in this world use."""
        ...

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode; the first observations ``(n_agents, n_modalities)``."""
        ...

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply ``(n_agents, n_factors)`` actions; the next observations."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-ready description of the world, enough to rebuild it (``name`` included)."""
        ...


def check_actions(actions: np.ndarray, n_agents: int, action_spec: tuple[int, ...]) -> np.ndarray:
    """``actions`` as int64 ``(n_agents, n_factors)``; ValueError naming the first bad entry."""
    arr = np.asarray(actions)
    if arr.shape != (n_agents, len(action_spec)):
        raise ValueError(f"actions must have shape {(n_agents, len(action_spec))}, "
                         f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    limits = np.asarray(action_spec, dtype=np.int64)
    bad = (arr < 0) | (arr >= limits)
    if bad.any():
        agent, factor = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"action {int(arr[agent, factor])} of agent {agent} for factor "
                         f"{factor} is outside 0..{int(limits[factor]) - 1}")
    return arr
