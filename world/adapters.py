"""Drive PettingZoo parallel environments and Gymnasium vector environments with agentloop agents.

Both adapters implement the :class:`world.base.World` protocol, so ``Agents``, ``Engine`` or any
object with ``step(obs) -> actions`` (a *stepper*) can drive them:

- :class:`PettingZooWorld` wraps a ``pettingzoo.ParallelEnv``; row ``i`` of the observation and
  action arrays is agent ``env.possible_agents[i]``.
- :class:`GymnasiumVectorWorld` wraps a ``gymnasium.vector.VectorEnv``; row ``i`` is
  sub-environment ``i``.

Spaces must be discrete: ``Discrete`` (any ``start``), ``MultiDiscrete`` (any ``start``, any
shape, flattened in C order), ``MultiBinary``, and ``Tuple`` / ``Dict`` of those (nested, in
their own order). :class:`DiscreteLayout` flattens an observation into one index per component,
counted from 0 (``start`` subtracted), and turns one index per component back into an action of
the space (``start`` added). Observation component ``m`` is the model's modality ``m``; action
component ``j`` is the model's ``j``-th controlled factor (``model.control_fac_idx``, or the
``control_factors`` given to the adapter). Both are checked against the model when the adapter
is built: a mismatch raises ``ValueError`` naming the modality or factor, the agent and the
sizes; a space that is not discrete raises ``ValueError`` naming the space.

Rules (the same for both adapters where they apply):

- **Absent agents** (PettingZoo): an agent that has terminated or been truncated, or that is not
  (yet) in ``env.agents``, keeps its last observation (index 0 in every modality if it has never
  been observed in this episode); its actions are not sent to the environment. ``active`` marks
  the rows whose actions the next ``step`` sends.
- **Episode end and reset**: ``step`` returns the *final* observation of an episode that ended
  in it (``done`` marks the rows; ``final_observations`` keeps them), and the episode restarts
  on the *next* ``step``, whose actions for the restarted rows are ignored and whose reward
  there is 0 ("next step" autoreset, Gymnasium's default). So agents see the outcome that ended
  the episode (a goal they prefer) and then the first outcome of the next one; ``reset_mask``
  marks the rows whose returned observation is the first of a new episode. PettingZoo
  environments restart as a whole once every agent is done, with seed ``seed + k`` for the
  ``k``-th restart after ``reset(seed)`` (``auto_reset=False`` makes that ``step`` raise
  instead). A Gymnasium vector environment in ``SAME_STEP`` mode, or ``DISABLED`` mode (the
  adapter then resets the ended sub-environments itself with ``reset_mask``), restarts within
  the step that ended the episode: the returned row is already the new episode's first
  observation and the final one is only in ``final_observations``.
- **Beliefs**: :func:`run_pettingzoo` and :func:`run_gymnasium` call the stepper's ``reset()``
  (``Agents.reset``: beliefs back to the prior ``D``) when every row restarts in the same step
  and the stepper has one. Rows restarting alone (Gymnasium sub-environments) keep their beliefs:
  the model should then describe the restart (e.g. terminal states lead to the start state).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from engine import Agents, GenerativeModel, InferenceConfig

from .base import check_actions

__all__ = [
    "DiscreteLayout",
    "GymnasiumVectorWorld",
    "PettingZooWorld",
    "RunTotals",
    "Stepper",
    "run_gymnasium",
    "run_pettingzoo",
]

_SUPPORTED = "Discrete, MultiDiscrete, MultiBinary, or a Tuple/Dict of them"


def _spaces() -> Any:
    """``gymnasium.spaces``, imported on first use (the ``adapters`` extra)."""
    try:
        from gymnasium import spaces
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("world.adapters needs gymnasium: pip install 'agentloop[adapters]'"
                          ) from exc
    return spaces


# ----------------------------------------------------------------------------- space flattening
class DiscreteLayout:
    """A discrete space seen as a flat list of components, each indexed from 0.

    Args:
        space: a Gymnasium space: ``Discrete``, ``MultiDiscrete``, ``MultiBinary``, or a
            ``Tuple`` / ``Dict`` of these (nested freely).
        name: how error messages call the space (e.g. ``"agent 'a_0' observation space"``).

    Raises:
        ValueError: naming the first part of ``space`` that is not discrete.

    ``sizes[k]`` is the number of values of component ``k`` and ``starts[k]`` its first value
    (``Discrete(n, start=s)`` is one component of size ``n`` starting at ``s``).
    """

    def __init__(self, space: Any, name: str = "space") -> None:
        self.space = space
        self.name = name
        sizes: list[int] = []
        starts: list[int] = []
        _components(space, name, sizes, starts)
        self.sizes: tuple[int, ...] = tuple(sizes)
        self.starts: tuple[int, ...] = tuple(starts)
        self._sizes = np.asarray(sizes, dtype=np.int64)
        self._starts = np.asarray(starts, dtype=np.int64)

    @property
    def n_components(self) -> int:
        """Number of components (modalities or control factors) of the space."""
        return len(self.sizes)

    def flatten(self, value: Any) -> np.ndarray:
        """One sample of the space -> int64 ``(n_components,)``, each in ``0..size-1``."""
        raw = np.concatenate(_raw(self.space, value)) if self.sizes else np.zeros(0, np.int64)
        flat = raw.astype(np.int64) - self._starts
        self._check_range(flat[None, :])
        return flat

    def flatten_batch(self, values: Any, n: int) -> np.ndarray:
        """A batch of ``n`` samples (Gymnasium's vector layout) -> int64 ``(n, n_components)``."""
        parts = _raw_batch(self.space, values, n)
        raw = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0), np.int64)
        flat = raw.astype(np.int64) - self._starts
        self._check_range(flat)
        return flat

    def unflatten(self, row: Sequence[int] | np.ndarray) -> Any:
        """One index per component -> a sample of the space (``start`` added back).

        ``Discrete`` gives a Python ``int``, ``MultiDiscrete`` / ``MultiBinary`` an array of the
        space's shape and dtype, ``Tuple`` a tuple and ``Dict`` a dict.
        """
        arr = np.asarray(row, dtype=np.int64).reshape(-1)
        if arr.shape != (self.n_components,):
            raise ValueError(f"{self.name}: expected {self.n_components} indices, got "
                             f"{arr.shape[0]}")
        self._check_range(arr[None, :], what="index")
        value, _ = _unflatten(self.space, arr + self._starts, 0)
        return value

    def unflatten_batch(self, rows: np.ndarray) -> Any:
        """``(n, n_components)`` indices -> a batch in Gymnasium's vector layout."""
        arr = np.asarray(rows, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != self.n_components:
            raise ValueError(f"{self.name}: expected shape (n, {self.n_components}), got "
                             f"{arr.shape}")
        self._check_range(arr, what="index")
        value, _ = _unflatten_batch(self.space, arr + self._starts, 0)
        return value

    def _check_range(self, flat: np.ndarray, what: str = "value") -> None:
        bad = (flat < 0) | (flat >= self._sizes)
        if bad.any():
            row, k = (int(v) for v in np.argwhere(bad)[0])
            where = f"row {row}, " if flat.shape[0] > 1 else ""
            if what == "value":      # report the value as the space writes it (start added)
                got, lo = int(flat[row, k]) + self.starts[k], self.starts[k]
            else:
                got, lo = int(flat[row, k]), 0
            raise ValueError(f"{self.name}: {what} {got} ({where}component {k}) is outside "
                             f"{lo}..{lo + self.sizes[k] - 1}")

    def __repr__(self) -> str:
        return f"DiscreteLayout({self.space!r}, sizes={list(self.sizes)})"


def _components(space: Any, name: str, sizes: list[int], starts: list[int]) -> None:
    spaces = _spaces()
    if isinstance(space, spaces.Discrete):
        sizes.append(int(space.n))
        starts.append(int(space.start))
    elif isinstance(space, spaces.MultiDiscrete):
        sizes.extend(int(v) for v in np.asarray(space.nvec).reshape(-1))
        starts.extend(int(v) for v in np.asarray(space.start).reshape(-1))
    elif isinstance(space, spaces.MultiBinary):
        k = int(np.prod(space.shape))
        sizes.extend([2] * k)
        starts.extend([0] * k)
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            _components(sub, f"{name}[{i}]", sizes, starts)
    elif isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            _components(sub, f"{name}[{key!r}]", sizes, starts)
    else:
        raise ValueError(f"{name} {space!r} is not discrete; adapters support {_SUPPORTED}")


def _ints(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: expected integers, got {arr.dtype} ({value!r})")
    return arr.astype(np.int64)


def _raw(space: Any, value: Any) -> list[np.ndarray]:
    spaces = _spaces()
    if isinstance(space, spaces.Tuple):
        return [p for sub, v in zip(space.spaces, value, strict=True) for p in _raw(sub, v)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _raw(sub, value[key])]
    return [_ints(value, repr(space)).reshape(-1)]


def _raw_batch(space: Any, values: Any, n: int) -> list[np.ndarray]:
    spaces = _spaces()
    if isinstance(space, spaces.Tuple):
        return [p for sub, v in zip(space.spaces, values, strict=True)
                for p in _raw_batch(sub, v, n)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _raw_batch(sub, values[key], n)]
    return [_ints(values, repr(space)).reshape(n, -1)]


def _unflatten(space: Any, raw: np.ndarray, pos: int) -> tuple[Any, int]:
    spaces = _spaces()
    if isinstance(space, spaces.Discrete):
        return int(raw[pos]), pos + 1
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        k = int(np.prod(space.shape))
        return raw[pos:pos + k].astype(space.dtype).reshape(space.shape), pos + k
    if isinstance(space, spaces.Tuple):
        out = []
        for sub in space.spaces:
            value, pos = _unflatten(sub, raw, pos)
            out.append(value)
        return tuple(out), pos
    result = {}
    for key, sub in space.spaces.items():
        result[key], pos = _unflatten(sub, raw, pos)
    return result, pos


def _unflatten_batch(space: Any, raw: np.ndarray, pos: int) -> tuple[Any, int]:
    spaces = _spaces()
    n = raw.shape[0]
    if isinstance(space, spaces.Discrete):
        return raw[:, pos].astype(space.dtype), pos + 1
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        k = int(np.prod(space.shape))
        return raw[:, pos:pos + k].astype(space.dtype).reshape(n, *space.shape), pos + k
    if isinstance(space, spaces.Tuple):
        out = []
        for sub in space.spaces:
            value, pos = _unflatten_batch(sub, raw, pos)
            out.append(value)
        return tuple(out), pos
    result = {}
    for key, sub in space.spaces.items():
        result[key], pos = _unflatten_batch(sub, raw, pos)
    return result, pos


# ----------------------------------------------------------------------------- model matching
def _control_factors(model: GenerativeModel, control_factors: Iterable[int] | None
                     ) -> tuple[int, ...]:
    factors = tuple(model.control_fac_idx if control_factors is None
                    else (int(f) for f in control_factors))
    for f in factors:
        if not 0 <= f < model.num_factors:
            raise ValueError(f"control factor {f} is not a factor of the model "
                             f"(it has {model.num_factors})")
    if len(set(factors)) != len(factors):
        raise ValueError(f"control_factors {list(factors)} repeats a factor")
    return factors


def _check_observations_match(model: GenerativeModel, layout: DiscreteLayout, who: str) -> None:
    if layout.n_components != model.num_modalities:
        raise ValueError(f"the model has {model.num_modalities} modalities but {who} "
                         f"observation space {layout.space} has {layout.n_components} "
                         f"discrete components")
    for m, (o, k) in enumerate(zip(model.num_obs, layout.sizes, strict=True)):
        if o != k:
            part = f" (component {m} of {layout.space})" if layout.n_components > 1 else ""
            raise ValueError(f"modality {m} has {o} outcomes but {who} observation space "
                             f"has {k}{part}")


def _check_actions_match(model: GenerativeModel, factors: tuple[int, ...],
                         layout: DiscreteLayout, who: str) -> None:
    if layout.n_components != len(factors):
        raise ValueError(f"the model has {len(factors)} control factors {list(factors)} but "
                         f"{who} action space {layout.space} has {layout.n_components} "
                         f"discrete components")
    for j, (f, k) in enumerate(zip(factors, layout.sizes, strict=True)):
        u = model.num_controls[f]
        if u != k:
            part = f" (component {j} of {layout.space})" if layout.n_components > 1 else ""
            raise ValueError(f"control factor {f} has {u} actions but {who} action space "
                             f"has {k}{part}")


class _AdapterBase:
    """What both adapters share: the model, the specs and the per-step result arrays."""

    n_agents: int

    def __init__(self, model: GenerativeModel, n: int,
                 control_factors: Iterable[int] | None) -> None:
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model must be an engine.GenerativeModel, got "
                            f"{type(model).__name__}")
        self._model = model
        self.n_agents = int(n)
        self.control_factors = _control_factors(model, control_factors)
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


# ----------------------------------------------------------------------------- PettingZoo
class PettingZooWorld(_AdapterBase):
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
    (completed episodes), ``infos`` (the environment's, by agent name). See the module
    docstring for the absent-agent and restart rules.
    """

    def __init__(self, env: Any, model: GenerativeModel,
                 control_factors: Iterable[int] | None = None, auto_reset: bool = True) -> None:
        names = list(getattr(env, "possible_agents", None) or [])
        if not names:
            raise ValueError("PettingZooWorld needs an environment with a non-empty "
                             "possible_agents list")
        if len(set(names)) != len(names):
            raise ValueError(f"possible_agents has repeated names: {names}")
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
            _check_observations_match(model, obs_layout, who)
            _check_actions_match(model, self.control_factors, act_layout, who)
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


# ----------------------------------------------------------------------------- Gymnasium
class GymnasiumVectorWorld(_AdapterBase):
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
            raise ValueError("GymnasiumVectorWorld needs a vector environment (num_envs >= 1)")
        super().__init__(model, n, control_factors)
        self.env = env
        who = "the sub-environments'"
        self._obs_layout = DiscreteLayout(env.single_observation_space,
                                          f"{who} observation space")
        self._act_layout = DiscreteLayout(env.single_action_space, f"{who} action space")
        _check_observations_match(model, self._obs_layout, "each sub-environment's")
        _check_actions_match(model, self.control_factors, self._act_layout,
                             "each sub-environment's")
        mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode", "NextStep")
        self.autoreset_mode: str = str(getattr(mode, "value", mode))
        if self.autoreset_mode not in ("NextStep", "SameStep", "Disabled"):
            raise ValueError(f"unknown autoreset mode {mode!r}")
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


# ----------------------------------------------------------------------------- run loops
@runtime_checkable
class Stepper(Protocol):
    """What drives an adapter: ``Agents``, ``Engine`` or anything with this ``step``."""

    def step(self, obs: np.ndarray) -> np.ndarray:
        """``(n, n_modalities)`` observations -> ``(n, n_factors)`` actions."""
        ...


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
