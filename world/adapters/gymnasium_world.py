"""``GymnasiumVectorWorld``: a Gymnasium vector environment, one agent per sub-environment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.errors import WorldError
from engine.model.generative_model import GenerativeModel
from world.adapters.adapter_base import AdapterBase
from world.adapters.discrete_layout import DiscreteLayout
from world.adapters.matching import check_actions_match, check_observations_match


class GymnasiumVectorWorld(AdapterBase):
    """A Gymnasium ``VectorEnv`` with discrete spaces, one agent per sub-environment.

    Args:
        env: the vector environment (``SyncVectorEnv``, ``AsyncVectorEnv``, ...); its
            ``single_observation_space`` / ``single_action_space`` are matched to the model.
        model: the generative model every agent uses.
        control_factors: the model factors the action space's components drive, in order
            (default: ``model.control_fac_idx``).

    The autoreset mode is read from ``env.metadata["autoreset_mode"]`` (``NEXT_STEP`` when
    absent). After each :meth:`step`: ``rewards``, ``terminated``, ``truncated``, ``done``
    (sub-environments whose episode ended in it), ``final_observations`` (their final
    observations), ``reset_mask`` (rows whose returned observation starts a new episode),
    ``episodes`` (completed episodes over all sub-environments) and ``infos``.
    """

    def __init__(self, env: Any, model: GenerativeModel,
                 control_factors: Iterable[int] | None = None) -> None:
        n = int(getattr(env, "num_envs", 0))
        if n < 1:
            raise WorldError("GymnasiumVectorWorld needs a vector environment (num_envs >= 1)")
        super().__init__(model, n, control_factors)
        self.env = env
        who = "the sub-environments'"
        self._obs_layout = DiscreteLayout(env.single_observation_space,
                                          f"{who} observation space")
        self._act_layout = DiscreteLayout(env.single_action_space, f"{who} action space")
        check_observations_match(model, self._obs_layout, "each sub-environment's")
        check_actions_match(model, self.control_factors, self._act_layout,
                             "each sub-environment's")
        mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode", "NextStep")
        self.autoreset_mode: str = str(getattr(mode, "value", mode))
        if self.autoreset_mode not in ("NextStep", "SameStep", "Disabled"):
            raise WorldError(f"unknown autoreset mode {mode!r}")
        self._pending = np.zeros(n, dtype=bool)

    def reset(self, seed: int) -> np.ndarray:
        """Reset every sub-environment (sub-environment ``i`` gets ``seed + i``)."""
        self._seed = int(seed)
        self.episodes = 0
        self._clear_step()
        self._pending[:] = False
        obs, self.infos = self.env.reset(seed=self._seed)
        self._obs[:] = self._obs_layout.flatten_batch(obs, self.n_agents)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply one action per sub-environment; the next observations ``(n, n_modalities)``."""
        self._need_reset("GymnasiumVectorWorld")
        comps = self._components(actions)
        self._clear_step()
        batched = self._act_layout.unflatten_batch(comps)
        obs, rewards, terminated, truncated, infos = self.env.step(batched)
        self.infos = infos
        flat = self._obs_layout.flatten_batch(obs, self.n_agents)
        self.rewards[:] = np.asarray(rewards, dtype=np.float64).reshape(self.n_agents)
        self.terminated[:] = np.asarray(terminated, dtype=bool).reshape(self.n_agents)
        self.truncated[:] = np.asarray(truncated, dtype=bool).reshape(self.n_agents)
        self.done[:] = self.terminated | self.truncated
        done = self.done
        if self.autoreset_mode == "NextStep":
            self.reset_mask[:] = self._pending
            self._pending[:] = done
            self.final_observations[done] = flat[done]
        elif done.any():
            if self.autoreset_mode == "SameStep":
                final = infos["final_obs"]
                for i in np.flatnonzero(done):
                    self.final_observations[i] = self._obs_layout.flatten(final[i])
            else:                                              # Disabled: reset them here
                self.final_observations[done] = flat[done]
                new_obs, reset_infos = self.env.reset(options={"reset_mask": done.copy()})
                flat[done] = self._obs_layout.flatten_batch(new_obs, self.n_agents)[done]
                self.infos = {**infos, "reset_info": reset_infos}
            self.reset_mask[:] = done
        self.episodes += int(done.sum())
        self._obs[:] = flat
        return self._obs.copy()

    def config(self) -> dict[str, Any]:
        """JSON-ready description: sub-environment id, count, seed, autoreset mode."""
        spec = getattr(self.env, "spec", None)
        subs = getattr(self.env, "envs", None) or [None]       # SyncVectorEnv has no spec
        name = (getattr(spec, "id", None) or getattr(getattr(subs[0], "spec", None), "id", None)
                or type(self.env).__name__)
        return {"name": "gymnasium-vector", "env": str(name), "num_envs": self.n_agents,
                "seed": self._seed, "autoreset_mode": self.autoreset_mode,
                "control_factors": list(self.control_factors)}

