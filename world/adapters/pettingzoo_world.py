"""``PettingZooWorld``: a PettingZoo parallel environment with discrete spaces as a world."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel
from world.adapters.adapter_base import AdapterBase
from world.adapters.discrete_layout import DiscreteLayout
from world.adapters.matching import check_actions_match, check_observations_match


class PettingZooWorld(AdapterBase):
    """A PettingZoo ``ParallelEnv`` with discrete spaces, as a :class:`world.base.World`.

    Args:
        env: the parallel environment; its ``possible_agents`` fix the rows (in that order).
        model: the generative model every agent uses: its modalities must match each agent's
            observation space and its control factors each agent's action space.
        control_factors: the model factors the action space's components drive, in order
            (default: ``model.control_fac_idx``).
        auto_reset: restart the environment on the step after every agent is done (seed
            ``seed + k`` for the ``k``-th restart); with ``False`` that step raises instead.

    After each :meth:`step`: ``rewards``, ``terminated``, ``truncated``, ``done`` (agents whose
    episode ended in it), ``active`` (agents whose actions the next step sends), ``reset_mask``
    (all rows when the step restarted the environment), ``episode_ended``, ``episodes``
    (completed episodes), ``infos`` (the environment's, by agent name). The absent-agent and
    restart rules are in docs/architecture.md ("world.adapters").
    """

    def __init__(self, env: Any, model: GenerativeModel,
                 control_factors: Iterable[int] | None = None, auto_reset: bool = True) -> None:
        names = list(getattr(env, "possible_agents", None) or [])
        if not names:
            raise WorldError("PettingZooWorld needs an environment with a non-empty "
                             "possible_agents list")
        if len(set(names)) != len(names):
            raise WorldError(f"possible_agents has repeated names: {names}")
        super().__init__(model, len(names), control_factors)
        self.env = env
        self.auto_reset = bool(auto_reset)
        self.agent_names: tuple[Any, ...] = tuple(names)
        self._row = {name: i for i, name in enumerate(names)}
        self._obs_layouts: list[DiscreteLayout] = []
        self._act_layouts: list[DiscreteLayout] = []
        for name in names:
            who = f"agent {name!r}"
            obs_layout = DiscreteLayout(env.observation_space(name), f"{who} observation space")
            act_layout = DiscreteLayout(env.action_space(name), f"{who} action space")
            check_observations_match(model, obs_layout, who)
            check_actions_match(model, self.control_factors, act_layout, who)
            self._obs_layouts.append(obs_layout)
            self._act_layouts.append(act_layout)
        self.active = np.zeros(self.n_agents, dtype=bool)
        self.episode_ended = False
        self._restarts = 0

    def reset(self, seed: int) -> np.ndarray:
        """Reset the environment with ``seed``; the first observations ``(n, n_modalities)``."""
        self._seed = int(seed)
        self._restarts = 0
        self.episodes = 0
        self._clear_step()
        return self._reset_env(self._seed)

    def _reset_env(self, seed: int) -> np.ndarray:
        obs, infos = self.env.reset(seed=seed)
        self._obs[:] = 0                      # agents absent at reset: index 0 until observed
        self._take(obs)
        self.infos = infos
        self.episode_ended = False
        self._set_active()
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Send the active agents' actions; the next observations ``(n, n_modalities)``.

        On the step after the episode ended, the environment restarts instead (actions are
        ignored, rewards are 0, ``reset_mask`` is all true).
        """
        self._need_reset("PettingZooWorld")
        comps = self._components(actions)
        self._clear_step()
        if self.episode_ended:
            if not self.auto_reset:
                raise RuntimeError("PettingZooWorld.step: the episode is over and auto_reset "
                                   "is off; call reset(seed)")
            self._restarts += 1
            obs = self._reset_env(self._seed + self._restarts)  # type: ignore[operator]
            self.reset_mask[:] = True
            return obs
        live = [a for a in self.env.agents if a in self._row]
        sent = {a: self._act_layouts[self._row[a]].unflatten(comps[self._row[a]]) for a in live}
        obs, rewards, terminated, truncated, infos = self.env.step(sent)
        self._take(obs)
        self.infos = infos
        for name, value in rewards.items():
            if name in self._row:
                self.rewards[self._row[name]] = float(value)
        for flags, out in ((terminated, self.terminated), (truncated, self.truncated)):
            for name, value in flags.items():
                if name in self._row:
                    out[self._row[name]] = bool(value)
        self.done[:] = self.terminated | self.truncated
        self._set_active()
        rows = [self._row[a] for a in live]
        if not self.env.agents or bool(self.done[rows].all()):
            self.episode_ended = True
            self.episodes += 1
        self.final_observations[self.done] = self._obs[self.done]
        return self._obs.copy()

    def _take(self, obs: dict[Any, Any]) -> None:
        for name, value in obs.items():
            row = self._row.get(name)
            if row is not None:
                self._obs[row] = self._obs_layouts[row].flatten(value)

    def _set_active(self) -> None:
        self.active[:] = False
        for name in self.env.agents:
            if name in self._row:
                self.active[self._row[name]] = True

    def config(self) -> dict[str, Any]:
        """JSON-ready description: environment name, agents, seed, restart rule."""
        meta = getattr(self.env, "metadata", None) or {}
        return {"name": "pettingzoo", "env": str(meta.get("name", type(self.env).__name__)),
                "agents": [str(a) for a in self.agent_names], "seed": self._seed,
                "auto_reset": self.auto_reset, "control_factors": list(self.control_factors)}

