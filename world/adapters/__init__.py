"""Drive PettingZoo parallel environments and Gymnasium vector environments with agentloop agents.

:class:`PettingZooWorld` (row ``i`` is agent ``env.possible_agents[i]``) and
:class:`GymnasiumVectorWorld` (row ``i`` is sub-environment ``i``) implement the
:class:`world.base.World` protocol, so ``Agents``, ``Engine`` or any :class:`Stepper` can drive
them; :func:`run_pettingzoo` and :func:`run_gymnasium` do so for a number of steps. Spaces must
be discrete (``Discrete``, ``MultiDiscrete``, ``MultiBinary``, ``Tuple`` / ``Dict`` of them);
:class:`DiscreteLayout` maps them to model modalities and control factors, and a mismatch with
the model raises :class:`engine.errors.WorldError`. The rules for absent agents, episode ends,
restarts and beliefs are in docs/architecture.md ("world.adapters").
"""

from engine.runtime.contracts import Stepper
from world.adapters.discrete_layout import DiscreteLayout
from world.adapters.gymnasium_world import GymnasiumVectorWorld
from world.adapters.pettingzoo_world import PettingZooWorld
from world.adapters.run_loops import RunTotals, run_gymnasium, run_pettingzoo

__all__ = [
    "DiscreteLayout",
    "GymnasiumVectorWorld",
    "PettingZooWorld",
    "RunTotals",
    "Stepper",
    "run_gymnasium",
    "run_pettingzoo",
]
