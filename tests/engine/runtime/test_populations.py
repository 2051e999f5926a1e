"""Several populations (different models and configs) stepped by one engine."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, ConfigError, InferenceConfig, ObservationError, Population
from engine.errors import AgentloopError
from engine.runtime.engine import Engine
from engine.runtime.shm import entries_of
from world.models import grid_model, random_model


def _observations(model, n: int, seed: int) -> np.ndarray:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)


def _populations() -> list[Population]:
    grid = grid_model(5)
    two_factor = random_model(np.random.default_rng(3), [3, 4], [3, 2], [2, 2])
    return [Population("walkers", grid, 300, InferenceConfig(policy_len=2)),
            Population("guessers", two_factor, 500,
                       InferenceConfig(action_selection="stochastic", alpha=3.0))]


@pytest.mark.parametrize("workers", [0, 2])
def test_each_population_matches_its_own_agents(workers: int) -> None:
    """Each population equals in-process Agents on its model, with agent ids numbered on
    across populations (so their random streams never coincide)."""
    populations = _populations()
    references, offset = [], 0
    for p in populations:
        references.append(Agents(p.model, p.n_agents, p.config, seed=4, agent_id_offset=offset))
        offset += p.n_agents
    with Engine(populations=populations, workers=workers, seed=4, chunk=128,
                beliefs="float") as engine:
        assert engine.n_agents == 800
        for tick in range(5):
            obs = [_observations(p.model, p.n_agents, seed=10 * tick + i)
                   for i, p in enumerate(populations)]
            actions = engine.step(obs)
            assert isinstance(actions, list) and len(actions) == 2
            for p, ref, ours, o in zip(populations, references, actions, obs, strict=True):
                np.testing.assert_array_equal(ours, ref.step(o))
                state = engine.population(p.name)
                np.testing.assert_array_equal(state.q_pi, ref.q_pi)
                for q_ours, q_ref in zip(state.qs, ref.qs, strict=True):
                    np.testing.assert_array_equal(q_ours, q_ref)
        run_id = engine.run_id
    assert entries_of([run_id]) == []


def test_dict_observations_give_dict_actions_and_worker_counts_agree() -> None:
    populations = _populations()
    results = []
    for workers in (0, 1, 2):
        with Engine(populations=populations, workers=workers, seed=1, chunk=64) as engine:
            for tick in range(4):
                obs = {p.name: _observations(p.model, p.n_agents, seed=tick + 7 * i)
                       for i, p in enumerate(populations)}
                actions = engine.step(obs)
            assert sorted(actions) == ["guessers", "walkers"]
            results.append({k: np.array(v) for k, v in actions.items()})
    for other in results[1:]:
        for name in results[0]:
            np.testing.assert_array_equal(other[name], results[0][name])


def test_bad_observations_name_the_population_and_change_nothing() -> None:
    populations = _populations()
    with Engine(populations=populations, workers=0, seed=1) as engine:
        good = [_observations(p.model, p.n_agents, seed=i) for i, p in enumerate(populations)]
        engine.step(good)
        before = [np.array(engine.population(i).state.qs) for i in range(2)]
        bad = [good[0], good[1].copy()]
        bad[1][17, 1] = 99
        with pytest.raises(ObservationError, match="population 'guessers'.*agent 17"):
            engine.step(bad)
        with pytest.raises(ObservationError, match="one array for each population"):
            engine.step({"walkers": good[0]})
        with pytest.raises(ObservationError, match="expected 2 arrays"):
            engine.step(good[:1])
        with pytest.raises(ObservationError, match="give a list or a dict"):
            engine.step(good[0])
        for i in range(2):
            np.testing.assert_array_equal(engine.population(i).state.qs, before[i])
        with pytest.raises(AgentloopError, match="population\\(name\\).qs"):
            _ = engine.qs
        with pytest.raises(KeyError, match="no population 'x'"):
            engine.population("x")


def test_deadline_reaches_later_populations_as_stale() -> None:
    populations = _populations()
    with Engine(populations=populations, workers=0, seed=1, chunk=32, degrade=False) as engine:
        obs = [_observations(p.model, p.n_agents, seed=i) for i, p in enumerate(populations)]
        engine.step(obs)
        engine.step(obs, budget_s=0.0)
        # the first chunk of the first population always runs; everything after is late
        assert engine.last_tick.stale_agents == 800 - 32
        assert engine.population("guessers").stale.all()
        assert engine.stale.shape == (800,)


def test_population_settings_are_checked() -> None:
    grid = grid_model(5)
    with pytest.raises(ConfigError, match="unique"):
        Engine(populations=[Population("a", grid, 5), Population("a", grid, 5)])
    with pytest.raises(ConfigError, match="either model and n_agents, or populations"):
        Engine(grid, 5, populations=[Population("a", grid, 5)])
    with pytest.raises(ConfigError, match="name must be"):
        Population("bad name", grid, 5)
    with pytest.raises(ConfigError, match="'b': a learning population .* not 'xp-numpy'"):
        Engine(populations=[Population("b", grid, 5, InferenceConfig(learn_A=True),
                                       backend="xp-numpy")])
    with pytest.raises(ConfigError, match="one dtype"):
        Engine(populations=[Population("a", grid, 5),
                            Population("b", grid, 5, InferenceConfig(dtype="float64"))])
    two = [Population("a", grid, 5), Population("b", grid, 3)]
    assert Engine(populations=two, id_offset=10).id_offsets == [10, 15]
    assert Engine(populations=two, id_offset=[40, 2]).id_offsets == [40, 2]
    with pytest.raises(ConfigError, match="id ranges overlap"):
        Engine(populations=two, id_offset=[0, 4])
    for bad in ([1], -1, [0, -8], "0"):
        with pytest.raises(ConfigError, match="id_offset must be"):
            Engine(populations=two, id_offset=bad)


def test_per_population_id_offsets_give_those_agents_streams() -> None:
    """A population numbered from its own offset acts as those agents of a larger run (what
    a cluster shard relies on)."""
    grid = grid_model(5)
    config = InferenceConfig(action_selection="stochastic", alpha=2.0)
    rng = np.random.default_rng(1)
    obs = [np.stack([rng.integers(0, o, size=n) for o in grid.num_obs], axis=1)
           for n in (30, 20)]
    whole = Engine(populations=[Population("a", grid, 30), Population("b", grid, 20)],
                   workers=0, config=config, seed=3)
    part = Engine(populations=[Population("a", grid, 10), Population("b", grid, 5)],
                  workers=0, config=config, seed=3, id_offset=[20, 30 + 15])
    with whole, part:
        for _ in range(3):
            full = whole.step(obs)
            mine = part.step([obs[0][20:30], obs[1][15:20]])
            np.testing.assert_array_equal(mine[0], full[0][20:30])
            np.testing.assert_array_equal(mine[1], full[1][15:20])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_deadline_does_not_always_starve_the_later_population(workers: int) -> None:
    """When the deadline cuts a tick, the next tick starts with the population it cut, so
    every population is updated in turn rather than the first one only."""
    populations = _populations()
    with Engine(populations=populations, workers=workers, seed=1, chunk=16,
                degrade=False) as engine:
        updated = {p.name: 0 for p in populations}
        for tick in range(6):
            obs = [_observations(p.model, p.n_agents, seed=tick + i)
                   for i, p in enumerate(populations)]
            engine.step(obs, budget_s=0.0)               # one chunk of one population a tick
            for p in populations:
                updated[p.name] += int((engine.population(p.name).stale == 0).sum())
        assert all(count > 0 for count in updated.values()), updated
