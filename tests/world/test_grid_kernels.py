"""The grid world's compiled step (world/kernels.py) against the NumPy step it replaced: the
same observations, cells, energy and counts, bit for bit, from the same seed and actions."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import WorldError
from world.grid import GridWorld, rank_in_group, rotated
from world.models import MOVES
from world.process import ColumnSampler, ModeFirstSampler


def _numpy_sample(sampler: ModeFirstSampler, cols: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """ModeFirstSampler.sample as it was in NumPy."""
    out = sampler.mode[cols]
    miss = np.flatnonzero(rng.random(cols.shape[0]) >= sampler.p_mode[cols])
    if miss.size:
        out[miss] = sampler.rest.sample(cols[miss], rng)
    return out


class _NumpyGrid(GridWorld):
    """GridWorld with the NumPy step of before the compiled loops (the reference)."""

    def step(self, actions: np.ndarray) -> np.ndarray:
        acts = np.asarray(actions, dtype=np.int64)[:, 0]
        offset = int(self._rng.integers(self.n_agents))
        self._tick += 1
        self._numpy_move(acts, offset)
        np.subtract(self._energy, self._cost[self._cell], out=self._energy)
        self._harvest(np.flatnonzero(self._on_resource[self._cell]), offset)
        np.minimum(self._stock + self._params["regrow"], self._params["stock_max"],
                   out=self._stock)
        self._numpy_respawn()
        for key in self._totals:
            self._totals[key] += self._last[key]
        obs = np.empty((self.n_agents, len(self._samplers)), dtype=np.int64)
        for m, sampler in enumerate(self._samplers):
            obs[:, m] = _numpy_sample(sampler, self._cell, self._rng)
        return obs

    def _numpy_move(self, acts: np.ndarray, offset: int) -> None:
        cell = self._cell
        target = self._moves[cell * len(MOVES) + acts]
        moving = target != cell
        n_moving = int(np.count_nonzero(moving))
        self._last["blocked_by_wall"] = int(np.count_nonzero(acts)) - n_moving
        collisions = 0
        if self.capacity < self.n_agents and n_moving:
            room = np.maximum(self.capacity - np.bincount(cell, minlength=self.n_cells), 0)
            movers = np.flatnonzero(moving)
            demand = np.bincount(target[movers], minlength=self.n_cells)
            contested = demand > room
            if contested.any():
                rivals = rotated(movers[contested[target[movers]]], offset)
                wanted = target[rivals]
                refused = rivals[rank_in_group(wanted, self.n_cells) >= room[wanted]]
                target[refused] = cell[refused]
                collisions = refused.size
        self._last["collisions"] = collisions
        self._cell = target

    def _numpy_respawn(self) -> None:
        dead = self._energy <= 0
        if self._has_goals:
            scored = self._on_goal[self._cell]
            self._last["goals"] = int(np.count_nonzero(scored))
            dead &= ~scored
            done = np.flatnonzero(dead | scored)
        else:
            self._last["goals"] = 0
            done = np.flatnonzero(dead)
        self._last["deaths"] = int(np.count_nonzero(dead))
        if done.size == 0:
            return
        occupancy = (np.bincount(self._cell, minlength=self.n_cells)
                     - np.bincount(self._cell[done], minlength=self.n_cells))
        self._place(done, occupancy)
        self._energy[done] = self._params["max_energy"]


@pytest.mark.parametrize("params", [
    dict(size=10, n_agents=3000),
    dict(size=6, n_agents=3000, capacity=150),               # crowded: collisions every tick
    dict(size=8, n_agents=2000, layout="random", layout_seed=3, capacity=60, drain=5),
    dict(size=5, n_agents=500, layout="open", noise=0.3, cue_reliability=0.6, drain=20),
])
def test_compiled_step_matches_the_numpy_step(params: dict) -> None:
    fast, slow = GridWorld(**params), _NumpyGrid(**params)
    np.testing.assert_array_equal(fast.reset(4), slow.reset(4))
    rng = np.random.default_rng(11)
    events = dict(collisions=0, deaths=0, harvested=0)
    for _ in range(25):
        actions = rng.integers(0, len(MOVES), size=(fast.n_agents, 1))
        np.testing.assert_array_equal(fast.step(actions), slow.step(actions.copy()))
        np.testing.assert_array_equal(fast.cells, slow.cells)
        np.testing.assert_array_equal(fast.energy, slow.energy)
        assert fast.stats() == slow.stats()
        for key in events:
            events[key] += fast.stats()[key]
    if params.get("capacity"):
        assert events["collisions"] > 0 and events["deaths"] > 0   # the paths were taken


def test_mode_first_sampler_matches_numpy_and_writes_into_strided_rows() -> None:
    rng = np.random.default_rng(0)
    for width in (1, 3, 7):                    # 1: the rest of each column is deterministic
        matrix = rng.random((width + 1, 40)) ** 4
        sampler = ModeFirstSampler(matrix / matrix.sum(axis=0))
        cols = rng.integers(0, 40, size=5000)
        expected = _numpy_sample(sampler, cols, np.random.default_rng(5))
        np.testing.assert_array_equal(sampler.sample(cols, np.random.default_rng(5)), expected)
        out = np.zeros((5000, 2), dtype=np.int64)
        sampler.sample(cols, np.random.default_rng(5), out=out[:, 1])
        np.testing.assert_array_equal(out[:, 1], expected)
        assert not out[:, 0].any()
    assert isinstance(sampler.rest, ColumnSampler)


def test_bad_actions_are_still_named() -> None:
    world = GridWorld(size=5, n_agents=50)
    actions = np.zeros((50, 1), dtype=np.int64)
    actions[17, 0] = 5
    with pytest.raises(WorldError, match="action 5 of agent 17 for factor 0"):
        world.step(actions)
    actions[17, 0] = -1
    with pytest.raises(WorldError, match="action -1 of agent 17"):
        world.step(actions)
