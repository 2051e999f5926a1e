"""The standard benchmark models, by name (``DESIGN.md``, "Standard benchmark models").

* ``grid-5``, ``grid-10``, ``grid-20``: :func:`world.models.grid_model` with N = 5, 10, 20
  (S = N^2 positions, modalities: noisy position (N^2) and a 3-valued resource cue, 5 actions).
* ``multi-3x3``: a fixed random model with three hidden factors (6, 4, 3 states; 3, 2 and 1
  actions, so the last factor is uncontrolled) and three modalities (4, 4, 3 outcomes) that read
  factors ``[0]``, ``[1]`` and ``[0, 2]``: it exercises the multi-factor code paths.

Models are built on first use and then shared, so the layouts they cache are shared too.
``STANDARD_MODELS`` holds the grids the README's results table uses; ``MODELS`` every named model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from engine.model.generative_model import GenerativeModel
from world.models import grid_model, random_model

#: Seed of the ``multi-3x3`` model: changing it changes the benchmark.
MULTI_SEED = 20240601

#: N of each ``grid-N`` model.
GRID_SIZES: dict[str, int] = {"grid-5": 5, "grid-10": 10, "grid-20": 20}


def _multi_3x3() -> GenerativeModel:
    return random_model(
        np.random.default_rng(MULTI_SEED),
        num_obs=[4, 4, 3],
        num_states=[6, 4, 3],
        num_controls=[3, 2, 1],
        A_factor_list=[[0], [1], [0, 2]],
    )


def _grid(n: int) -> Callable[[], GenerativeModel]:
    def build() -> GenerativeModel:
        return grid_model(n)

    build.__name__ = f"grid_{n}"
    return build


class _LazyModels(Mapping[str, GenerativeModel]):
    """A read-only name -> model mapping that builds each model once, on first access."""

    def __init__(self, builders: dict[str, Callable[[], GenerativeModel]],
                 cache: dict[str, GenerativeModel]) -> None:
        self._builders = builders
        self._cache = cache

    def __getitem__(self, name: str) -> GenerativeModel:
        model = self._cache.get(name)
        if model is None:
            model = self._builders[name]()          # KeyError for unknown names
            self._cache[name] = model
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._builders)})"


_BUILDERS: dict[str, Callable[[], GenerativeModel]] = {
    name: _grid(n) for name, n in GRID_SIZES.items()
}
_BUILDERS["multi-3x3"] = _multi_3x3
_CACHE: dict[str, GenerativeModel] = {}

#: Every named benchmark model.
MODELS: Mapping[str, GenerativeModel] = _LazyModels(_BUILDERS, _CACHE)
#: The standard ``grid-N`` models (``DESIGN.md``).
STANDARD_MODELS: Mapping[str, GenerativeModel] = _LazyModels(
    {name: _BUILDERS[name] for name in GRID_SIZES}, _CACHE)


def model_by_name(name: str) -> GenerativeModel:
    """The benchmark model called ``name`` (``grid-5``, ``grid-10``, ``grid-20``, ``multi-3x3``).

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown benchmark model {name!r}; known: {', '.join(_BUILDERS)}")
    return MODELS[name]
