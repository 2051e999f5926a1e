"""Populations: groups of agents that share one generative model and inference config.

An :class:`~engine.loop.Engine` steps one or several populations in one tick. Each has its own
model arrays and per-agent arrays in shared memory; agent ids (the key of each agent's random
stream) are numbered across populations in order, so they never collide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from engine.errors import ConfigError, EngineStateError
from engine.kernels.backends import resolve_backend
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.runtime.agents import Agents, per_agent_A, per_agent_B
from engine.runtime.learnt_params import learns
from engine.runtime.shared_state import SharedState


@dataclasses.dataclass(frozen=True)
class Population:
    """``n_agents`` agents using ``model`` with ``config`` (the engine's config when None).

    ``backend`` (the engine's when None): ``"numba"`` steps the population on the CPU worker
    processes; ``"cupy"`` keeps its state on the GPU and ``"xp-numpy"`` runs the same array code
    on the CPU (:mod:`engine.device`); ``"auto"`` picks ``"cupy"`` when it is usable.
    """

    name: str
    model: GenerativeModel
    n_agents: int
    config: InferenceConfig | None = None
    backend: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"Population: name must be letters, digits, '-' or '_', "
                              f"got {self.name!r}")
        if int(self.n_agents) < 0:
            raise ConfigError(f"Population {self.name!r}: n_agents must be >= 0, "
                              f"got {self.n_agents}")


class PopulationState:
    """A population's current posteriors, policy values, actions and stale flags.

    Views of shared memory, except ``qs`` with quantized beliefs (a decoded copy). A device
    population's state is copied from the device (``sync``) before ``qs``, ``q_pi`` or ``G``
    is read.
    """

    def __init__(self, population: Population, checker: Agents, state: SharedState,
                 sync: Callable[[], None] | None = None) -> None:
        self.population = population
        self._sync = sync or (lambda: None)
        self.name = population.name
        self.n_agents = int(population.n_agents)
        self.checker = checker
        self.state = state
        self.actions = state.actions.view()
        self.actions.setflags(write=False)

    def detach_device(self) -> None:
        """The population has left its device: its shared-memory state is current as is."""
        self._sync = lambda: None

    @property
    def qs(self) -> list[np.ndarray]:
        """Posterior over each factor, ``(n, S_f)``."""
        self._sync()
        offsets = self.checker.layout.state_offset
        flat = self.state.qs
        codec = self.state.codec_instance
        if codec is not None:
            flat = np.empty(flat.shape, dtype=self.checker.layout.dtype)
            codec.decode(self.state.qs, flat)
        return [flat[:, offsets[f]:offsets[f + 1]] for f in range(len(offsets) - 1)]

    @property
    def q_pi(self) -> np.ndarray:
        """Posterior over policies after the last tick, ``(n, n_policies)``."""
        self._sync()
        return self.state.q_pi

    @property
    def G(self) -> np.ndarray:
        """Expected free energy per policy after the last tick, ``(n, n_policies)``."""
        self._sync()
        return self.state.G

    @property
    def stale(self) -> np.ndarray:
        """1 for agents the last tick did not reach (they kept their previous action)."""
        return self.state.stale

    @property
    def pA(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over A, ``(n, O_m, S_1, ..., S_F)``, rebuilt from
        their own entries in shared memory (a copy; when the population learns A; as
        ``Agents.pA``)."""
        if self.state.params is None or not self.state.params.spec.learn_A:
            return None
        return per_agent_A(self.checker.layout, self.state.params.full("pA"))

    @property
    def pB(self) -> list[np.ndarray] | None:
        """Each agent's Dirichlet counts over B, ``(n, S_f, S_f, U_f)``, rebuilt from their own
        entries in shared memory (a copy; when the population learns B; as ``Agents.pB``)."""
        if self.state.params is None or not self.state.params.spec.learn_B:
            return None
        return per_agent_B(self.checker.layout, self.state.params.full("pBt"))


def population_index(populations: list[Population], key: str | int) -> int:
    """The position of a population given by name or by position (negative counts from the
    end); KeyError naming the populations there are."""
    names = [p.name for p in populations]
    if isinstance(key, (int, np.integer)) and -len(names) <= key < len(names):
        return int(key) % len(names)
    if key in names:
        return names.index(key)
    raise KeyError(f"no population {key!r}; this engine has {names}")


def population_backends(populations: list[Population], configs: list[InferenceConfig],
                        engine_backend: str) -> list[str]:
    """Each population's resolved backend (``"numba"``, ``"cupy"`` or ``"xp-numpy"``);
    ConfigError for the reference backend or an unusable one, naming the population."""
    resolved = []
    for p, config in zip(populations, configs, strict=True):
        try:
            backend = resolve_backend(p.backend or engine_backend, config)
        except ConfigError as exc:
            raise ConfigError(f"population {p.name!r}: {exc}") from None
        if backend == "reference":
            raise ConfigError(f"population {p.name!r}: the engine runs backend 'numba', 'cupy' "
                              f"or 'xp-numpy'; the reference backend is for Agents")
        if backend != "numba" and learns(config):
            raise ConfigError(f"population {p.name!r}: a learning population (learn_A, learn_B "
                              f"or use_param_info_gain) runs on the CPU workers, backend "
                              f"'numba', not {backend!r}")
        resolved.append(backend)
    return resolved


def check_populations(populations: list[Population], engine_config: InferenceConfig
                      ) -> list[InferenceConfig]:
    """Each population's effective config; ConfigError on duplicate names."""
    names = [p.name for p in populations]
    if not populations:
        raise ConfigError("Engine: give a model and n_agents, or at least one Population")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"Engine: population names must be unique; repeated: {duplicates}")
    configs = []
    for p in populations:
        configs.append(p.config or engine_config)
    return configs


class PopulationReads:
    """An engine's reads of its populations' state (``population(name)``, and ``qs``,
    ``q_pi``, ``G`` when it has one population); the state exists while it is started."""

    populations: list[Population]
    population_states: dict[str, PopulationState]
    _single: bool

    def population(self, name: str | int = 0) -> PopulationState:
        """A population's state (``qs``, ``q_pi``, ``G``, ``actions``, ``stale``) by name or
        position; the engine must be started."""
        if "population_states" not in self.__dict__:
            raise EngineStateError(f"{type(self).__name__}.population: call start() first")
        return self.population_states[
            self.populations[population_index(self.populations, name)].name]

    def _chosen_index(self, population: str | int | None, what: str) -> int:
        if population is None:
            self._only_population(what)
            return 0
        return population_index(self.populations, population)

    def _only_population(self, what: str) -> PopulationState:
        if not self._single:
            raise EngineStateError(f"{type(self).__name__}.{what}: this engine has "
                                   f"{len(self.populations)} populations; use "
                                   f"engine.population(name).{what}")
        return self.population(0)

    @property
    def qs(self) -> list[np.ndarray]:
        """Posterior over each factor, ``(n, S_f)``: views of shared memory, or (quantized
        beliefs) a decoded copy. One population only (else ``population(name).qs``)."""
        return self._only_population("qs").qs

    @property
    def q_pi(self) -> np.ndarray:
        """Posterior over policies after the last tick (one population only)."""
        return self._only_population("q_pi").q_pi

    @property
    def G(self) -> np.ndarray:
        """Expected free energy per policy after the last tick (one population only)."""
        return self._only_population("G").G
