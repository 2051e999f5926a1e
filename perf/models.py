"""The benchmark models, by name: the zoo every benchmark reports on (``BENCHMARKS.md``).

* ``grid-5``, ``grid-10``, ``grid-20``: :func:`world.models.grid_model` with N = 5, 10, 20
  (S = N^2 positions; modalities: noisy position (N^2, noise to the 4 neighbours: sparse) and a
  3-valued resource cue; 5 deterministic moves). ``grid-5`` is for tests, not in the zoo.
* ``dense-grid-10``, ``dense-grid-20``: the same grids with the position noise spread over every
  cell (``grid_model(n, dense=True)``): every entry of A is non-zero, as tutorials write it.
* ``tmaze``: pymdp's T-maze (``TMazeEnv(reward_probs=[0.98, 0.02])`` and its demo agent):
  location (4, controlled, 4 actions) x reward condition (2, uncontrolled); modalities location
  (4), reward (3: C = 0, 3, -3) and cue (2).
* ``multi-3x3``: a fixed random model with three hidden factors (6, 4, 3 states; 3, 2 and 1
  actions, so the last factor is uncontrolled) and three modalities (4, 4, 3 outcomes) that read
  factors ``[0]``, ``[1]`` and ``[0, 2]``: it exercises the multi-factor code paths.
* ``multi-modal-4``: a fixed random model with two factors (12 states and 4 actions; 3 states,
  uncontrolled) and four dense modalities of 12, 10, 8 and 6 outcomes (5,760 joint outcomes)
  reading ``[0]``, ``[0, 1]``, ``[0, 1]`` and ``[1]``.
* ``epistemic-chain``: pymdp's epistemic (cue) chaining demo (:func:`world.models.
  epistemic_chain_model`: a 5 x 7 grid, 4 cue-2 locations, 2 reward conditions; 280 joint
  states, 4 modalities, 1,575 joint outcomes), at policy_len 4 (625 policies).
* ``world-grid``: the model of ``GridWorld(size=10)`` (default layout, walls in B).
* ``world-foraging``: the model of ``ForagingWorld(size=10)`` (cell x patch context, 3
  modalities).

Each model carries the policy lengths the bench runs it at (:func:`policy_lens_of`). Models are
built on first use and then shared, so the layouts they cache are shared too. ``ZOO`` names the
zoo in report order, ``STANDARD_MODELS`` the sparse grids, ``MODELS`` every named model.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from engine.model.generative_model import GenerativeModel
from world.models import epistemic_chain_model, grid_model, random_model, tmaze_model

#: Seed of the ``multi-3x3`` model: changing it changes the benchmark.
MULTI_SEED = 20240601
#: Seed of the ``multi-modal-4`` model.
MULTI_MODAL_SEED = 20251116

#: N of each ``grid-N`` model.
GRID_SIZES: dict[str, int] = {"grid-5": 5, "grid-10": 10, "grid-20": 20}
#: N of each ``dense-grid-N`` model.
DENSE_GRID_SIZES: dict[str, int] = {"dense-grid-10": 10, "dense-grid-20": 20}


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """A named benchmark model: how to build it, what it is, and the policy lengths it runs at."""

    name: str
    build: Callable[[], GenerativeModel]
    description: str
    policy_lens: tuple[int, ...] = (1, 3)
    in_zoo: bool = True


def _multi_3x3() -> GenerativeModel:
    return random_model(
        np.random.default_rng(MULTI_SEED),
        num_obs=[4, 4, 3],
        num_states=[6, 4, 3],
        num_controls=[3, 2, 1],
        A_factor_list=[[0], [1], [0, 2]],
    )


def _multi_modal_4() -> GenerativeModel:
    return random_model(
        np.random.default_rng(MULTI_MODAL_SEED),
        num_obs=[12, 10, 8, 6],
        num_states=[12, 3],
        num_controls=[4, 1],
        A_factor_list=[[0], [0, 1], [0, 1], [1]],
    )


def _world_grid() -> GenerativeModel:
    from world.grid import GridWorld

    return GridWorld(10, 1).model()


def _world_foraging() -> GenerativeModel:
    from world.foraging import ForagingWorld

    return ForagingWorld(10, 1).model()


def _grid(n: int, dense: bool = False) -> Callable[[], GenerativeModel]:
    def build() -> GenerativeModel:
        return grid_model(n, dense=dense)

    build.__name__ = f"{'dense_' if dense else ''}grid_{n}"
    return build


def _entries() -> list[ZooEntry]:
    out = [ZooEntry(name, _grid(n), f"{n}x{n} grid, position noise to the 4 neighbours "
                    "(sparse A), 3-valued cue, 5 moves", in_zoo=n != 5)
           for name, n in GRID_SIZES.items()]
    out += [ZooEntry(name, _grid(n, dense=True), f"{n}x{n} grid, position noise over every "
                     "cell (dense A), 3-valued cue, 5 moves")
            for name, n in DENSE_GRID_SIZES.items()]
    out += [
        ZooEntry("tmaze", tmaze_model, "pymdp's T-maze: location x reward condition "
                 "(uncontrolled), 3 modalities"),
        ZooEntry("multi-3x3", _multi_3x3, "random: 3 factors (one uncontrolled), 3 modalities"),
        ZooEntry("multi-modal-4", _multi_modal_4, "random: 2 factors (one uncontrolled), 4 "
                 "dense modalities, 5,760 joint outcomes"),
        ZooEntry("epistemic-chain", epistemic_chain_model, "pymdp's cue-chaining demo: 5x7 "
                 "grid x cue location x reward condition, 4 modalities", policy_lens=(4,)),
        ZooEntry("world-grid", _world_grid, "GridWorld(10)'s model: walls in B, 2 modalities"),
        ZooEntry("world-foraging", _world_foraging, "ForagingWorld(10)'s model: cell x "
                 "switching patch context, 3 modalities"),
    ]
    return out


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


#: Every named model's entry.
ENTRIES: dict[str, ZooEntry] = {e.name: e for e in _entries()}
_BUILDERS: dict[str, Callable[[], GenerativeModel]] = {n: e.build for n, e in ENTRIES.items()}
_CACHE: dict[str, GenerativeModel] = {}

#: Every named benchmark model.
MODELS: Mapping[str, GenerativeModel] = _LazyModels(_BUILDERS, _CACHE)
#: The standard (sparse) ``grid-N`` models (``DESIGN.md``).
STANDARD_MODELS: Mapping[str, GenerativeModel] = _LazyModels(
    {name: _BUILDERS[name] for name in GRID_SIZES}, _CACHE)
#: The zoo, in report order.
ZOO: tuple[str, ...] = tuple(n for n, e in ENTRIES.items() if e.in_zoo)


def model_by_name(name: str) -> GenerativeModel:
    """The benchmark model called ``name`` (any of :data:`MODELS`).

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown benchmark model {name!r}; known: {', '.join(_BUILDERS)}")
    return MODELS[name]


def policy_lens_of(name: str) -> tuple[int, ...]:
    """The policy lengths the bench runs model ``name`` at (``KeyError`` when unknown)."""
    if name not in ENTRIES:
        raise KeyError(f"unknown benchmark model {name!r}; known: {', '.join(ENTRIES)}")
    return ENTRIES[name].policy_lens


def parse_case(parser: argparse.ArgumentParser, case: str) -> tuple[str, int, int]:
    """``MODEL:POLICY_LEN:AGENTS`` of a benchmark's command line as ``(model, policy_len,
    agents)``; ``parser.error`` (exit 2) names what is wrong."""
    try:
        model, policy_len, agents = case.split(":")
        parsed = (model, int(policy_len), int(agents))
    except ValueError:
        parser.error(f"expected MODEL:POLICY_LEN:AGENTS, got {case!r}")
    if model not in _BUILDERS:
        parser.error(f"unknown model {model!r}; known: {', '.join(_BUILDERS)}")
    return parsed
