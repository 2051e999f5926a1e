"""Degradation ladder: the controller's hysteresis, forced levels, and the fixed-rate loop."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine import Agents, InferenceConfig
from engine.runtime.degrade import (
    FEWER_ITERATIONS,
    FULL,
    ROTATING_BUDGET,
    ROTATING_FRACTION,
    SHORTER_HORIZON,
    STALE_ACTIONS,
    DegradeController,
    noop_levels,
)
from engine.runtime.engine import Engine
from world.models import grid_model
from world.process import ProcessWorld


def test_controller_moves_down_on_a_miss_and_up_after_calm_ticks() -> None:
    c = DegradeController(high=0.9, low=0.5, hot_ticks=2, calm_ticks=3)
    assert c.observe(1.5) == 1                      # missed budget: down at once
    assert c.observe(0.95) == 1                     # one hot tick is not enough
    assert c.observe(0.95) == 2
    assert c.observe(0.7) == 2                      # between low and high: stay
    assert [c.observe(0.2) for _ in range(3)] == [2, 2, 1]
    assert [c.observe(0.2) for _ in range(3)] == [1, 1, 0]
    assert c.observe(0.1) == 0


def test_a_climb_settles_before_a_miss_sends_it_back() -> None:
    """The first ticks after climbing pay for the agents not updated below: a miss there is
    hot, not an immediate fall, so a population near capacity does not cycle for ever."""
    c = DegradeController(high=0.9, low=0.5, hot_ticks=2, calm_ticks=2, settle_ticks=3,
                          level=STALE_ACTIONS)
    assert [c.observe(0.1) for _ in range(2)] == [STALE_ACTIONS, ROTATING_FRACTION]
    assert c.observe(1.3) == ROTATING_FRACTION       # settling: hot, not down
    assert c.observe(0.6) == ROTATING_FRACTION
    assert c.observe(0.8) == ROTATING_FRACTION       # settled, and holding
    assert c.observe(1.3) == STALE_ACTIONS           # a miss once settled: down at once
    c = DegradeController(hot_ticks=2, calm_ticks=1, settle_ticks=3, level=2)
    c.observe(0.1)
    assert [c.observe(1.5), c.observe(1.5)] == [1, 2]   # repeated misses still move down


def test_controller_is_bounded_and_validated() -> None:
    c = DegradeController(max_level=2)
    for _ in range(10):
        c.observe(5.0)
    assert c.level == 2
    with pytest.raises(ValueError):
        DegradeController(low=0.9, high=0.5)


def _obs(model, n: int, seed: int) -> np.ndarray:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)


@pytest.mark.parametrize("workers", [0, 1])
def test_forced_levels(workers: int) -> None:
    model = grid_model(4)
    n = 400
    config = InferenceConfig(policy_len=2)
    one_step = Agents(model, n, InferenceConfig(policy_len=1), seed=0)
    with Engine(model, n, workers=workers, config=config, chunk=50) as engine:
        first = np.array(engine.step(_obs(model, n, 0)))
        one_step.step(_obs(model, n, 0))
        engine.step(_obs(model, n, 1), level=STALE_ACTIONS)
        assert engine.stale.all()
        np.testing.assert_array_equal(engine.state.actions, first)
        engine.step(_obs(model, n, 2), level=ROTATING_FRACTION)
        stale = engine.stale.reshape(-1, 50)[:, 0] if workers == 0 else engine.stale
        assert 0 < engine.last_tick.stale_agents < n
        assert stale.any()
    with Engine(model, n, workers=workers, config=config) as engine:
        engine.step(_obs(model, n, 0), level=SHORTER_HORIZON)
        # policies valued by their first step: G(a, b) equals a one-step agent's G(a)
        first_actions = engine.checkers[0].policies[:, 0, 0]
        np.testing.assert_allclose(engine.G, one_step.G[:, first_actions], rtol=1e-6)


def test_fixed_rate_run_keeps_time_degrades_under_overload_and_recovers() -> None:
    model = grid_model(10)
    n = 3000                                # about 0.1 s a tick at full quality, policy_len 3
    controller = DegradeController(calm_ticks=1)
    with Engine(model, n, workers=0, config=InferenceConfig(policy_len=3),
                degrade=controller) as engine:
        world = ProcessWorld(model, n)
        t0 = time.monotonic()
        hot = engine.run(world, hz=100.0, ticks=15)
        assert hot.level_counts[FULL] < 15             # it had to degrade
        assert time.monotonic() - t0 < 15 / 100.0 + 3.0
        engine.run(world, hz=3.0, ticks=6)
        assert engine.last_tick.level == FULL          # recovered once the load fell
        t0 = time.monotonic()
        steady = engine.run(ProcessWorld(model, n), hz=4.0, ticks=6)
        elapsed = time.monotonic() - t0
        assert 6 / 4.0 - 0.3 < elapsed < 6 / 4.0 + 0.6  # no drift
        assert steady.level_counts[FULL] >= 5


def test_rungs_that_change_nothing_are_skipped() -> None:
    """Single-factor posteriors do not iterate and one-step policies have no horizon to cut:
    for such populations the controller goes from full straight to the rotating fraction."""
    assert noop_levels([(1, 10, 1)]) == (FEWER_ITERATIONS, SHORTER_HORIZON)
    assert noop_levels([(1, 10, 3)]) == (FEWER_ITERATIONS,)
    assert noop_levels([(2, 1, 1), (1, 10, 2)]) == (FEWER_ITERATIONS,)
    assert noop_levels([(2, 10, 2)]) == ()
    c = DegradeController(calm_ticks=1, settle_ticks=0, skip=(FEWER_ITERATIONS, SHORTER_HORIZON))
    assert c.observe(1.2) == ROTATING_FRACTION
    assert c.observe(1.2) == STALE_ACTIONS
    assert [c.observe(0.1) for _ in range(2)] == [ROTATING_FRACTION, FULL]
    with pytest.raises(ValueError, match="skip"):
        DegradeController(skip=(FULL,))
    with Engine(grid_model(4), 10, workers=0) as engine:
        assert engine.controller.skip == (FEWER_ITERATIONS, SHORTER_HORIZON)
    with Engine(grid_model(4), 10, workers=0, config=InferenceConfig(policy_len=2)) as engine:
        assert engine.controller.skip == (FEWER_ITERATIONS,)


@pytest.mark.parametrize("workers", [0, 2])
def test_deadline_cuts_resume_where_they_stopped(workers: int) -> None:
    """A deadline that leaves agents stale moves each slice's start to the first chunk it did
    not reach, so over enough ticks every agent is updated, not the same head of each slice."""
    model = grid_model(4)
    n, chunk = 640, 32
    with Engine(model, n, workers=workers, chunk=chunk, degrade=False) as engine:
        updated = np.zeros(n, dtype=bool)
        chunks_per_slice = n // max(workers, 1) // chunk
        for tick in range(chunks_per_slice):
            engine.step(_obs(model, n, tick), budget_s=0.0)     # one chunk per slice a tick
            assert engine.last_tick.stale_agents == n - chunk * max(workers, 1)
            updated |= engine.stale == 0
        assert updated.all()


def test_rotating_fraction_keeps_within_part_of_the_budget() -> None:
    """At the rotating fraction the workers' deadline is ROTATING_BUDGET of the tick's budget:
    past capacity the tick ends early (utilisation between the controller's thresholds) and
    the controller holds that rung rather than falling to stale actions."""
    model = grid_model(4)
    with Engine(model, 64, workers=0) as engine:
        began = time.monotonic()
        engine.step(_obs(model, 64, 0), budget_s=10.0, level=ROTATING_FRACTION)
        deadline = engine.control.get("deadline")
        assert began + 10.0 * ROTATING_BUDGET - 0.01 <= deadline <= (
            time.monotonic() + 10.0 * ROTATING_BUDGET)
        engine.step(_obs(model, 64, 1), budget_s=10.0, level=FULL)
        assert engine.control.get("deadline") > began + 10.0 * ROTATING_BUDGET + 1.0
    c = DegradeController(level=ROTATING_FRACTION)
    assert {c.observe(ROTATING_BUDGET + 0.02) for _ in range(50)} == {ROTATING_FRACTION}
