"""The ``World`` protocol: what an agentloop engine drives, vectorised over agents.

A world holds ``n_agents`` agents; it is a :class:`engine.runtime.contracts.WorldLike`
(``reset(seed)``, ``step(actions)``, agent axis first) that also describes its observation and
action specs, the generative model its agents use and a JSON-ready ``config()``. The array
conventions are in docs/architecture.md ("world.base").
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel
from engine.runtime.contracts import WorldLike


@runtime_checkable
class World(WorldLike, Protocol):
    """A multi-agent environment stepped in lockstep with the engine's tick: a ``WorldLike``
    (``reset``, ``step``) with specs, a model and a config."""

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

    def config(self) -> dict[str, Any]:
        """JSON-ready description of the world, enough to rebuild it (``name`` included)."""
        ...


def check_actions(actions: np.ndarray, n_agents: int, action_spec: tuple[int, ...]) -> np.ndarray:
    """``actions`` as int64 ``(n_agents, n_factors)``; WorldError naming the first bad entry."""
    arr = np.asarray(actions)
    if arr.shape != (n_agents, len(action_spec)):
        raise WorldError(f"actions must have shape {(n_agents, len(action_spec))}, "
                         f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise WorldError(f"actions must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    limits = np.asarray(action_spec, dtype=np.int64)
    if arr.size == 0 or (arr.min() >= 0 and (arr.max(axis=0) < limits).all()):
        return arr                                   # two reductions, no temporaries
    bad = (arr < 0) | (arr >= limits)
    if bad.any():
        agent, factor = (int(v) for v in np.argwhere(bad)[0])
        raise WorldError(f"action {int(arr[agent, factor])} of agent {agent} for factor "
                         f"{factor} is outside 0..{int(limits[factor]) - 1}")
    return arr
