"""Degradation ladder: the controller's hysteresis, forced levels, and the fixed-rate loop."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine import Agents, InferenceConfig
from engine.runtime.degrade import (
    COLD_TICKS,
    FEWER_ITERATIONS,
    FULL,
    MARGIN_SHARE,
    ROTATING_BUDGET,
    ROTATING_FRACTION,
    SHORTER_HORIZON,
    STALE_ACTIONS,
    SUB_BLOCK,
    DegradeController,
    noop_levels,
)
from engine.runtime.engine import Engine
from world.models import grid_model
from world.process import ProcessWorld


def _steady(c: DegradeController, cost_by_level: dict[int, float], n: int, budget: float,
            ticks: int) -> list[int]:
    """Drive ``c`` with a simulated engine whose agent-step costs ``cost_by_level[level]``
    seconds: each tick updates what fits in the budget (the deadline cut), at most ``n``."""
    levels = []
    for _ in range(ticks):
        cost = cost_by_level[c.level]
        updated = max(1, min(n, int(budget / cost)))
        levels.append(c.observe_tick(updated * cost, budget, updated, n))
    return levels


def test_a_rung_that_cannot_cover_everyone_gives_way_to_a_cheaper_one() -> None:
    c = DegradeController(patience=2)
    levels = _steady(c, {FULL: 1e-4, FEWER_ITERATIONS: 0.8e-4, SHORTER_HORIZON: 0.4e-4},
                     n=1000, budget=0.05, ticks=8)
    assert levels[:4] == [FULL, FEWER_ITERATIONS, FEWER_ITERATIONS, SHORTER_HORIZON]
    assert set(levels[4:]) == {SHORTER_HORIZON}      # cheapest rung, and no lower by choice


def test_a_steady_load_never_cycles() -> None:
    """The flapping of issue 18: near capacity the old controller went down on a hot tick and
    up after calm ones for ever. Costs per rung make the two tests exclusive."""
    for budget in np.linspace(0.03, 0.2, 35):
        c = DegradeController(patience=2)
        levels = _steady(c, {FULL: 1e-4, FEWER_ITERATIONS: 0.6e-4, SHORTER_HORIZON: 0.3e-4},
                         n=1000, budget=float(budget), ticks=200)
        changes = sum(a != b for a, b in zip(levels[:-1], levels[1:], strict=True))
        assert changes <= 2, (budget, levels)
        assert max(levels) <= SHORTER_HORIZON


def test_the_richer_rung_returns_once_the_load_falls() -> None:
    """Costs measured under contention do not keep it down: the richer rung is predicted from
    the current rung's fresh cost and the rungs' measured ratio."""
    c = DegradeController(patience=2)
    busy = {FULL: 2e-4, FEWER_ITERATIONS: 1.6e-4, SHORTER_HORIZON: 0.8e-4}
    assert _steady(c, busy, n=1000, budget=0.1, ticks=10)[-1] == SHORTER_HORIZON
    quiet = {level: cost / 4 for level, cost in busy.items()}
    levels = _steady(c, quiet, n=1000, budget=0.1, ticks=12)
    assert levels[-1] == FULL and levels.index(FULL) <= 8, levels


def test_controller_is_bounded_and_validated() -> None:
    c = DegradeController(max_level=FEWER_ITERATIONS)
    assert _steady(c, {FULL: 1.0, FEWER_ITERATIONS: 1.0}, 100, 0.01, 10)[-1] == 1
    assert c.margin_s(50) == pytest.approx(c.margin_blocks * 50 * 1.0)
    assert c.margin_s(4096) == pytest.approx(c.margin_blocks * SUB_BLOCK * 1.0)
    with pytest.raises(ValueError, match="climb < target"):
        DegradeController(target=0.5, climb=0.9)
    with pytest.raises(ValueError, match="forced levels only"):
        DegradeController(max_level=STALE_ACTIONS)
    forced = DegradeController(level=ROTATING_FRACTION)
    assert forced.observe_tick(1.0, 0.1, 10, 100) == ROTATING_FRACTION   # forced: left alone


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


@pytest.mark.alone
def test_fixed_rate_run_keeps_time_degrades_under_overload_and_recovers() -> None:
    model = grid_model(10)
    n = 3000                       # 0.1-0.3 s a tick at full quality, policy_len 3 (2 cores)
    controller = DegradeController(patience=1)
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
        steady = engine.run(ProcessWorld(model, n), hz=2.0, ticks=6)
        elapsed = time.monotonic() - t0
        assert 6 / 2.0 - 0.3 < elapsed < 6 / 2.0 + 0.6  # no drift
        assert steady.level_counts[FULL] >= 5


def test_rungs_that_change_nothing_are_skipped() -> None:
    """Single-factor posteriors do not iterate and one-step policies have no horizon to cut:
    for such populations the controller stays at full quality, and the deadline cut updates
    as many agents as fit, in turn."""
    assert noop_levels([(1, 10, 1)]) == (FEWER_ITERATIONS, SHORTER_HORIZON)
    assert noop_levels([(1, 10, 3)]) == (FEWER_ITERATIONS,)
    assert noop_levels([(2, 1, 1), (1, 10, 2)]) == (FEWER_ITERATIONS,)
    assert noop_levels([(2, 10, 2)]) == ()
    c = DegradeController(patience=1, skip=(FEWER_ITERATIONS, SHORTER_HORIZON))
    assert set(_steady(c, {FULL: 1.0}, 100, 0.01, 10)) == {FULL}
    c = DegradeController(patience=1, skip=(FEWER_ITERATIONS,))
    assert _steady(c, {FULL: 1.0, SHORTER_HORIZON: 0.5}, 100, 0.01, 3)[0] == SHORTER_HORIZON
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


@pytest.mark.parametrize("workers", [0, 2])
def test_deadline_cuts_inside_a_chunk_resume_at_the_first_agent_not_stepped(
        workers: int) -> None:
    """With chunks longer than a block, a tick with no time left steps one block per worker,
    and the next tick starts at the first agent that block did not reach, part-way into the
    chunk: block after block, each agent is updated once before any is updated twice."""
    model = grid_model(4)
    n, chunk = 1024, 4 * SUB_BLOCK
    slices = ((0, n),) if workers == 0 else ((0, n // 2), (n // 2, n))
    with Engine(model, n, workers=workers, chunk=chunk, degrade=False) as engine:
        for tick in range(2 * (slices[0][1] - slices[0][0]) // SUB_BLOCK):
            engine.step(_obs(model, n, tick), budget_s=0.0)
            at = tick * SUB_BLOCK % (slices[0][1] - slices[0][0])
            expected = np.ones(n, dtype=np.uint8)
            for lo, _ in slices:
                expected[lo + at:lo + at + SUB_BLOCK] = 0
            np.testing.assert_array_equal(engine.stale, expected, err_msg=f"tick {tick}")


def test_the_margin_learns_the_tail_of_cut_ticks_in_blocks_of_work() -> None:
    """Ticks cut by the deadline that end past their budget widen the margin kept before the
    deadline to cover that tail (the second-longest of the recent ones, past the cold first
    ticks), counted in blocks of the ticks' time per agent, so it follows the cost as the load
    comes and goes; once the long tails leave the window it is back to ``margin_blocks``. A
    tick whose margin left it only its first blocks counts those as its tail, not the margin
    (which would feed on itself)."""
    c = DegradeController(max_level=FULL)
    n, budget, cost = 100_000, 0.1, 1e-5

    def tick(wall: float, per_agent: float = cost) -> None:
        c.margin_s(1024)
        updated = round(wall / per_agent)
        c.observe_tick(wall, budget, updated, n, busy_s=updated * per_agent)

    def late(tail: float) -> None:          # past the time the last block had to start by
        tick(budget - c.margin_s(1024) + tail)

    base = c.margin_blocks * SUB_BLOCK * cost
    tick(budget / 2)
    assert c.margin_s(1024) == pytest.approx(base)
    late(0.02)                              # a cold tick's tail holds while cold ...
    assert c.margin_s(1024) == pytest.approx(c.tail_headroom * 0.02)
    for _ in range(COLD_TICKS - 2):
        tick(budget / 2)
    late(0.012)                             # ... and until two others are counted
    assert c.margin_s(1024) == pytest.approx(c.tail_headroom * 0.02)
    late(0.05)                              # the longest alone is not the margin
    assert c.margin_s(1024) == pytest.approx(c.tail_headroom * 0.012)
    for _ in range(c.tail_window):
        tick(budget / 2)
    assert c.margin_s(1024) == pytest.approx(base)
    late(0.01)
    late(0.01)
    wide = c.margin_s(1024)
    assert wide == pytest.approx(c.tail_headroom * 0.01)
    tick(budget - wide, per_agent=2 * cost)                 # the cost per agent doubles
    assert c.margin_s(1024) == pytest.approx(wide * c.cost_s[FULL] / cost)
    for _ in range(c.tail_window):
        tick(budget / 2, per_agent=2 * cost)
    assert c.margin_s(1024) == pytest.approx(c.margin_blocks * SUB_BLOCK * c.cost_s[FULL])
    c = DegradeController(max_level=FULL, margin_blocks=200.0)  # a margin over the budget
    for _ in range(COLD_TICKS + c.tail_window):
        tick(0.005)                     # the first blocks only, 5 ms: the tail, not 5 + margin
    assert max(c._tails) * SUB_BLOCK * cost == pytest.approx(0.005)


def test_long_tails_never_take_more_than_a_share_of_the_budget() -> None:
    """Issue 18 at 1,000,000 agents: two 65 ms hiccups in the window set the margin over the
    budget; the ticks then updated only their first blocks, their wall time per agent (in which
    the margin is counted) rose tenfold and held the margin there for the whole window (256 of
    1,000,000 agents a tick). Given the tick's budget, the margin keeps at most
    ``MARGIN_SHARE`` of it, so the workers always have the rest."""
    c = DegradeController(max_level=FULL)
    n, budget, cost = 1_000_000, 0.1, 9e-6
    updates = []

    def tick(tail: float, fixed: float = 0.01) -> None:
        margin = c.margin_s(1024, budget)
        assert margin <= MARGIN_SHARE * budget + 1e-12
        updated = max(256, round(2 * (budget - margin - fixed) / cost))
        updates.append(updated)
        c.observe_tick(budget - margin + tail, budget, updated, n, 2,
                       busy_s=updated * cost)

    for _ in range(COLD_TICKS + 20):
        tick(0.002)
    tick(0.065)                            # two hiccups
    tick(0.065)
    for _ in range(50):
        tick(0.002)
    assert c.margin_s(1024, budget) == pytest.approx(MARGIN_SHARE * budget)
    assert min(updates) >= 2 * (budget * (1 - MARGIN_SHARE) - 0.01) / cost - 1
    assert c.margin_s(1024) > MARGIN_SHARE * budget   # uncapped without a budget


def test_rotating_fraction_keeps_within_part_of_the_budget() -> None:
    """A forced rotating fraction gives the workers ROTATING_BUDGET of the tick's budget."""
    model = grid_model(4)
    with Engine(model, 64, workers=0, degrade=False) as engine:
        began = time.monotonic()
        engine.step(_obs(model, 64, 0), budget_s=10.0, level=ROTATING_FRACTION)
        deadline = engine.control.get("deadline")
        assert began + 10.0 * ROTATING_BUDGET - 0.01 <= deadline <= (
            time.monotonic() + 10.0 * ROTATING_BUDGET)
        engine.step(_obs(model, 64, 1), budget_s=10.0, level=FULL)
        assert engine.control.get("deadline") > began + 10.0 * ROTATING_BUDGET + 1.0


@pytest.mark.alone
@pytest.mark.parametrize("workers", [0, 2])
def test_under_overload_ticks_hold_the_budget_and_every_agent_takes_its_turn(
        workers: int) -> None:
    """Past capacity the engine updates what fits, in turn: no tick updates nobody, ticks end
    near the budget (the last chunk is claimed only while it fits), and over a few ticks
    every agent has been updated."""
    model = grid_model(10)
    n, budget = 2000, 0.03
    world = ProcessWorld(model, n)
    with Engine(model, n, workers=workers, chunk=64,
                config=InferenceConfig(policy_len=2)) as engine:
        obs = world.reset(1)
        engine.warm_up(obs)
        seen = np.zeros(n, dtype=bool)
        walls, levels, stale = [], [], []
        for _ in range(60):
            obs = world.step(engine.step(obs, budget_s=budget))
            walls.append(engine.last_tick.wall_s)
            levels.append(engine.last_tick.level)
            stale.append(engine.last_tick.stale_agents)
            seen |= engine.stale == 0
        assert max(levels) <= SHORTER_HORIZON and min(stale) < n
        assert seen.all(), int((~seen).sum())
        assert np.median(walls[10:]) < 1.5 * budget, walls
