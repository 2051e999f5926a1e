"""The grid world: protocol, observations, determinism, collisions, resources, energy, walls,
goals, validation, its model, the registry, and agents that do better than chance in it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Agents, GenerativeModel, InferenceConfig, WorldError
from engine.runtime.contracts import WorldLike
from world.base import World
from world.grid import EMPTY, RESOURCE, WALL, GridWorld, random_layout
from world.models import grid_model
from world.registry import WORLDS, make_world, world_from_config

STAY, UP, DOWN, LEFT, RIGHT = range(5)
SMALL = ["...", "...", "..R"]          # 3 x 3, resource in the bottom-right corner (cell 8)


def small(n_agents: int = 2, **params: object) -> GridWorld:
    return GridWorld(3, n_agents, layout=params.pop("layout", SMALL), **params)


def act(*moves: int) -> np.ndarray:
    return np.array(moves, dtype=np.int64)[:, None]


def random_actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 5, size=(n, 1))


# ---------------------------------------------------------------------------------- protocol
def test_is_a_world_with_matching_specs() -> None:
    w = GridWorld(10, 50)
    assert isinstance(w, World)
    assert w.observation_spec == (100, 3)
    assert w.action_spec == (5,)
    model = w.model()
    assert isinstance(model, GenerativeModel)
    assert model.num_obs == w.observation_spec
    assert model.num_controls == w.action_spec


class _SpecsOnly:
    """Everything a ``World`` has except ``reset`` and ``step``."""

    n_agents = 1
    observation_spec = (2,)
    action_spec = (1,)

    def model(self) -> GenerativeModel:
        return grid_model(2)

    def config(self) -> dict[str, object]:
        return {"name": "specs-only"}


class _StepsOnly:
    """A ``WorldLike`` and nothing more."""

    def reset(self, seed: int) -> np.ndarray:
        return np.zeros((1, 1), dtype=np.int64)

    def step(self, actions: np.ndarray) -> np.ndarray:
        return np.zeros((1, 1), dtype=np.int64)


class _FullWorld(_SpecsOnly, _StepsOnly):
    """Both halves: a ``World``."""


def test_world_protocol_extends_worldlike_and_checks_reset_and_step() -> None:
    assert issubclass(World, WorldLike)
    assert isinstance(GridWorld(3, 1, layout=SMALL), WorldLike)
    assert isinstance(_FullWorld(), World)
    assert not isinstance(_SpecsOnly(), World)       # reset/step come from WorldLike
    assert isinstance(_StepsOnly(), WorldLike) and not isinstance(_StepsOnly(), World)


def test_observations_shape_dtype_and_range() -> None:
    w = GridWorld(10, 500, seed=3)
    obs = w.reset(3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert obs.shape == (500, 2) and obs.dtype == np.int64
        assert (obs >= 0).all() and (obs < np.array(w.observation_spec[:2])).all()
        obs = w.step(random_actions(rng, 500))
    assert w.positions.shape == (500, 2)
    assert (w.positions[:, 0] * 10 + w.positions[:, 1] == w.cells).all()


def test_noiseless_observations_are_true_cell_and_cue() -> None:
    w = GridWorld(10, 2000, noise=0.0, cue_reliability=1.0)
    obs = w.reset(1)
    assert (obs[:, 0] == w.cells).all()
    kinds = np.asarray(w.kinds).ravel()
    res_r, res_c = np.nonzero(w.kinds == RESOURCE)
    r, c = np.divmod(w.cells, 10)
    dist = (np.abs(r[:, None] - res_r) + np.abs(c[:, None] - res_c)).min(axis=1)
    expected = np.where(kinds[w.cells] == RESOURCE, 2, np.where(dist <= 2, 1, 0))
    assert (obs[:, 1] == expected).all()


def test_noisy_position_is_right_about_one_minus_noise_of_the_time() -> None:
    w = GridWorld(10, 20_000, noise=0.2)
    obs = w.reset(0)
    assert abs((obs[:, 0] == w.cells).mean() - 0.8) < 0.015


def test_same_seed_same_actions_same_observations() -> None:
    rng = np.random.default_rng(7)
    actions = [random_actions(rng, 300) for _ in range(20)]
    runs = []
    for _ in range(2):
        w = GridWorld(10, 300, capacity=6)
        trace = [w.reset(11)] + [w.step(a).copy() for a in actions]
        runs.append((np.stack(trace), w.stats(), w.energy.copy()))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2], runs[1][2])
    other = GridWorld(10, 300, capacity=6)
    assert not np.array_equal(other.reset(12), runs[0][0][0])
    assert np.array_equal(other.reset(11), runs[0][0][0])     # reset(seed) restarts the episode


# -------------------------------------------------------------------------------- collisions
def test_two_movers_into_one_free_place_one_enters() -> None:
    winners = set()
    for seed in range(20):
        w = small(capacity=1)
        w.reset(seed)
        w.set_cells(np.array([0, 2]))
        w.step(act(RIGHT, LEFT))                              # both into cell 1
        cells = w.cells.tolist()
        assert sorted(cells) in ([0, 1], [1, 2])
        assert w.stats()["collisions"] == 1
        winners.add(cells.index(1))
    assert winners == {0, 1}            # the seeded rotation lets either agent win


def test_leaving_agent_frees_its_place_only_next_tick() -> None:
    w = small(capacity=1)
    w.set_cells(np.array([0, 1]))
    w.step(act(RIGHT, RIGHT))             # agent 0 into cell 1, which agent 1 is leaving
    assert w.cells.tolist() == [0, 2]
    assert w.stats()["collisions"] == 1
    w.step(act(RIGHT, STAY))
    assert w.cells.tolist() == [1, 2]


def test_swap_through_full_cells_is_refused() -> None:
    w = small(capacity=1)
    w.set_cells(np.array([0, 1]))
    w.step(act(RIGHT, LEFT))
    assert w.cells.tolist() == [0, 1]
    assert w.stats()["collisions"] == 2


def test_capacity_never_exceeded_under_random_moves() -> None:
    w = GridWorld(10, 2000, capacity=24, seed=2)
    rng = np.random.default_rng(2)
    collisions = 0
    for _ in range(40):
        w.step(random_actions(rng, 2000))
        assert w.occupancy().max() <= 24
        collisions += w.stats()["collisions"]
    assert collisions == w.stats()["collisions_total"] > 0


# --------------------------------------------------------------------------------- walls
def test_walls_and_edges_block_moves_in_world_and_model() -> None:
    w = small(layout=[".#.", "...", "..R"], n_agents=2)
    w.set_cells(np.array([0, 4]))
    w.step(act(RIGHT, UP))                # into the wall at (0, 1) twice
    assert w.cells.tolist() == [0, 4]
    assert w.stats()["blocked_by_wall"] == 2
    w.step(act(UP, DOWN))                 # off the grid; down is free
    assert w.cells.tolist() == [0, 7]
    assert w.stats()["blocked_by_wall"] == 1
    B = w.model().B[0]
    assert B[0, 0, RIGHT] == 1.0 and B[0, 0, UP] == 1.0 and B[3, 0, DOWN] == 1.0
    assert B[1, np.arange(9) != 1, :].sum() == 0.0      # nothing moves into the wall
    assert w.model().D[0][1] == 0.0


def test_set_cells_rejects_walls_and_full_cells() -> None:
    w = small(layout=[".#.", "...", "..R"], n_agents=2, capacity=1)
    with pytest.raises(ValueError, match="agent 1 would be on a wall"):
        w.set_cells(np.array([0, 1]))
    with pytest.raises(ValueError, match="over capacity 1"):
        w.set_cells(np.array([4, 4]))


# --------------------------------------------------------------------------- resources
def test_harvest_depletes_and_stock_regrows() -> None:
    w = small(n_agents=5, capacity=5, stock_max=3.0, regrow=0.5, harvest_energy=10)
    w.set_cells(np.full(5, 8))            # all on the resource
    harvested, levels = [], []
    for _ in range(5):
        before = w.energy.copy()
        w.step(act(*[STAY] * 5))
        harvested.append(w.stats()["harvested"])
        levels.append(float(w.resource_levels[2, 2]))
        gained = np.minimum(before - 1 + 10, 100)
        assert int((w.energy == gained).sum()) == harvested[-1]
        assert w.stats()["on_resource"] == 5
    assert harvested == [3, 0, 1, 0, 1]
    assert levels == [0.5, 1.0, 0.5, 1.0, 0.5]
    assert w.stats()["harvested_total"] == 5


def test_untouched_stock_stays_full() -> None:
    w = GridWorld(10, 10, stock_max=7.0, regrow=2.0)
    w.set_cells(np.arange(10))            # top row, away from both resources
    for _ in range(3):
        w.step(act(*[STAY] * 10))
    assert w.stats()["resource_stock"] == [7.0, 7.0]


# ---------------------------------------------------------------------------- energy, goal
def test_energy_drains_and_hazards_cost_more() -> None:
    w = small(layout=["H..", "...", "..R"], n_agents=2, capacity=1, max_energy=100,
              hazard_cost=5)
    w.set_cells(np.array([0, 4]))
    before = w.energy.copy()
    w.step(act(STAY, STAY))
    assert w.energy.tolist() == [before[0] - 6, before[1] - 1]
    assert w.stats()["on_hazard"] == 1


def test_exhausted_agents_respawn_full_on_an_empty_cell() -> None:
    w = small(layout=["H..", "...", "..R"], n_agents=2, capacity=1, max_energy=3,
              hazard_cost=3)
    w.set_cells(np.array([0, 4]))
    before = w.energy.copy()              # in 1..3: the hazard kills agent 0 this tick
    w.step(act(STAY, STAY))
    stats = w.stats()
    assert stats["deaths"] == 1 + int(before[1] == 1) == stats["deaths_total"]
    assert w.energy[0] == 3
    assert np.asarray(w.kinds).ravel()[w.cells[0]] == EMPTY
    assert w.cells[0] != w.cells[1]       # capacity 1 holds at respawn


def test_reaching_the_goal_scores_and_respawns() -> None:
    w = small(layout=["G..", "...", "..R"], n_agents=2, capacity=1, max_energy=50)
    w.set_cells(np.array([1, 4]))
    w.step(act(LEFT, STAY))
    stats = w.stats()
    assert stats["goals"] == 1 and stats["goals_total"] == 1 and stats["deaths"] == 0
    assert w.cells[0] != 0 and np.asarray(w.kinds).ravel()[w.cells[0]] == EMPTY
    assert w.energy[0] == 50


# ------------------------------------------------------------------------- validation, model
def test_bad_actions_are_rejected_naming_agent_and_factor() -> None:
    w = GridWorld(5, 6)
    bad = np.zeros((6, 1), dtype=np.int64)
    bad[3, 0] = 7
    with pytest.raises(ValueError, match="agent 3 for factor 0"):
        w.step(bad)
    with pytest.raises(ValueError, match="shape"):
        w.step(np.zeros((5, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        w.step(np.zeros((6, 1)))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(size=1), "size must be an int >= 2"),
    (dict(n_agents=0), "n_agents must be an int >= 1"),
    (dict(capacity=0), "capacity must be an int >= 1"),
    (dict(noise=1.0), "noise must be a number >= 0.0 and < 1.0"),
    (dict(cue_reliability=1.5), "cue_reliability"),
    (dict(max_energy=0), "max_energy"),
    (dict(drain=-1), "drain"),
    (dict(regrow=float("nan")), "regrow"),
    (dict(layout="maze"), "unknown layout 'maze'"),
    (dict(size=3, layout=["...", ".X.", "..R"]), "unknown cell 'X'"),
    (dict(size=3, layout=["..", "...", "..R"]), "row 0"),
    (dict(size=2, layout=["RR", "##"]), "no empty cell"),
    (dict(size=3, n_agents=9, capacity=1), "9 agents do not fit on the 8 empty cells"),
])
def test_constructor_validation(kwargs: dict[str, object], message: str) -> None:
    params = dict(size=10, n_agents=10) | kwargs
    with pytest.raises(ValueError, match=message):
        GridWorld(**params)
    with pytest.raises(WorldError, match=message):
        GridWorld(**params)


def test_world_problems_raise_world_error() -> None:
    w = small()
    w.reset(0)
    with pytest.raises(WorldError, match="agent 1 for factor 0"):
        w.step(act(STAY, 9))
    with pytest.raises(WorldError, match="would be on a wall"):
        GridWorld(3, 1, layout=["...", ".#.", "..R"]).set_cells(np.array([4]))
    with pytest.raises(WorldError, match="unknown world 'x'"):
        make_world("x", 5, 10)
    with pytest.raises(WorldError, match="grid size must be >= 2"):
        grid_model(1)


def test_open_layout_model_is_the_grid_benchmark_model() -> None:
    mine, bench = GridWorld(10, 5, layout="open").model(), grid_model(10)
    for ours, theirs in zip(mine.A + mine.B + mine.C + mine.D,
                            bench.A + bench.B + bench.C + bench.D, strict=True):
        assert np.array_equal(ours, theirs)


def test_random_layout_is_seeded() -> None:
    assert random_layout(8, 4) == random_layout(8, 4) != random_layout(8, 5)
    w = GridWorld(8, 20, layout="random", layout_seed=4)
    assert w.layout_rows == random_layout(8, 4)
    assert int((w.kinds == RESOURCE).sum()) == 2 and int((w.kinds == WALL).sum()) > 0


def test_stats_are_json_ready() -> None:
    w = GridWorld(10, 100)
    w.step(random_actions(np.random.default_rng(0), 100))
    stats = w.stats()
    assert json.loads(json.dumps(stats)) == stats
    for key in ("tick", "on_resource", "harvested", "collisions", "blocked_by_wall", "deaths",
                "goals", "harvested_total", "collisions_total", "deaths_total", "goals_total",
                "mean_energy", "min_energy", "on_hazard", "resource_stock", "resource_total"):
        assert key in stats


# ---------------------------------------------------------------------------------- registry
def test_registry_round_trips_config() -> None:
    w = make_world("grid", 6, 40, capacity=3, layout="random", layout_seed=2, seed=9)
    assert isinstance(w, GridWorld) and WORLDS["grid"] is GridWorld
    config = json.loads(json.dumps(w.config()))
    assert config["name"] == "grid" and config["seed"] == 9
    rebuilt = world_from_config(config)
    assert rebuilt.config() == w.config()
    rng = np.random.default_rng(1)
    actions = [random_actions(rng, 40) for _ in range(10)]
    a = [w.reset(9)] + [w.step(x) for x in actions]
    b = [rebuilt.reset(9)] + [rebuilt.step(x) for x in actions]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert world_from_config(config, n_agents=7).n_agents == 7


def test_registry_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ValueError, match="unknown world 'x'; choose from grid, foraging"):
        make_world("x", 5, 10)
    with pytest.raises(ValueError, match="unknown world 'x'"):
        world_from_config({"name": "x"})
    with pytest.raises(ValueError, match="unknown parameters colour"):
        world_from_config({"name": "grid", "size": 5, "colour": 1})


# --------------------------------------------------------------------------- scale, agents
def _agent_ticks_on_resource(w: GridWorld, agents: Agents | None, ticks: int) -> int:
    obs = w.reset(3)
    rng = np.random.default_rng(5)
    total = 0
    for _ in range(ticks):
        actions = agents.step(obs) if agents else random_actions(rng, w.n_agents)
        obs = w.step(actions)
        total += w.stats()["on_resource"]
    return total


def test_active_inference_agents_beat_random_actions() -> None:
    w = GridWorld(10, 300)
    agents = Agents(w.model(), 300, InferenceConfig(policy_len=1), seed=0)
    smart = _agent_ticks_on_resource(w, agents, 30)
    chance = _agent_ticks_on_resource(w, None, 30)
    assert smart > 2.5 * chance, (smart, chance)      # measured 777 vs 205
