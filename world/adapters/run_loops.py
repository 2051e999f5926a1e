"""Run loops: ``run_pettingzoo`` and ``run_gymnasium`` drive an adapter with a stepper."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents
from engine.runtime.contracts import Stepper
from world.adapters.gymnasium_world import GymnasiumVectorWorld
from world.adapters.pettingzoo_world import PettingZooWorld


@dataclasses.dataclass(frozen=True)
class RunTotals:
    """Totals of :func:`run_pettingzoo` / :func:`run_gymnasium`.

    ``episodes`` counts completed episodes (PettingZoo: of the whole environment; Gymnasium:
    summed over sub-environments); ``total_reward`` is by agent name (Gymnasium: ``"env_<i>"``).
    """

    steps: int
    episodes: int
    total_reward: dict[str, float]


def _drive(world: PettingZooWorld | GymnasiumVectorWorld, stepper: Stepper | None,
           model: GenerativeModel, steps: int, config: InferenceConfig | None, seed: int,
           names: Sequence[str]) -> RunTotals:
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if stepper is None:
        stepper = Agents(model, world.n_agents, config=config or InferenceConfig(), seed=seed)
    elif not callable(getattr(stepper, "step", None)):
        raise TypeError(f"stepper must have step(obs) -> actions, got {type(stepper).__name__}")
    totals = np.zeros(world.n_agents)
    obs = world.reset(seed)
    reset = getattr(stepper, "reset", None)
    for _ in range(steps):
        actions = stepper.step(obs)
        obs = world.step(actions)
        totals += world.rewards
        if world.reset_mask.all() and callable(reset):
            reset()
    return RunTotals(steps=steps, episodes=world.episodes,
                     total_reward={str(k): float(v) for k, v in zip(names, totals, strict=True)})


def run_pettingzoo(env: Any, model: GenerativeModel, steps: int,
                   config: InferenceConfig | None = None, seed: int = 0,
                   stepper: Stepper | None = None,
                   control_factors: Iterable[int] | None = None) -> RunTotals:
    """Run ``steps`` steps of a PettingZoo parallel env driven by agents on ``model``.

    ``stepper`` defaults to ``Agents(model, len(env.possible_agents), config, seed)``; pass an
    ``Engine`` (started) or any object with ``step(obs) -> actions`` instead. The environment
    is reset with ``seed`` and restarts with ``seed + k`` after each episode; the stepper's
    ``reset()``, if it has one, is called when it does.
    """
    world = PettingZooWorld(env, model, control_factors=control_factors)
    return _drive(world, stepper, model, steps, config, seed, [str(a) for a in world.agent_names])


def run_gymnasium(env: Any, model: GenerativeModel, steps: int,
                  config: InferenceConfig | None = None, seed: int = 0,
                  stepper: Stepper | None = None,
                  control_factors: Iterable[int] | None = None) -> RunTotals:
    """Run ``steps`` steps of a Gymnasium vector env, one agent per sub-environment.

    ``stepper`` defaults to ``Agents(model, env.num_envs, config, seed)``. Sub-environments
    restart by the env's autoreset mode; the stepper's ``reset()``, if it has one, is called
    only when all of them restart in the same step.
    """
    world = GymnasiumVectorWorld(env, model, control_factors=control_factors)
    return _drive(world, stepper, model, steps, config, seed,
                  [f"env_{i}" for i in range(world.n_agents)])

