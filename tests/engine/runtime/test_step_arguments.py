"""Every argument of the engine's entry points is checked before any state changes: a clear
ConfigError, the tick not advanced, every agent's beliefs and actions as they were."""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, Engine
from engine.errors import ConfigError
from world.models import grid_model

N = 50
BAD_STEP = [
    ({"budget_s": "0.1"}, "budget_s must be a number"),
    ({"budget_s": float("nan")}, "budget_s must be a finite number >= 0"),
    ({"budget_s": -1}, "budget_s must be a finite number >= 0"),
    ({"budget_s": float("inf")}, "budget_s must be a finite number >= 0"),
    ({"budget_s": True}, "budget_s must be a number"),
    ({"level": 2.5}, "level must be an int"),
    ({"level": "1"}, "level must be an int"),
    ({"level": True}, "level must be an int"),
    ({"level": 5}, "level must be in 0..4"),
    ({"level": -1}, "level must be in 0..4"),
]


def _snapshot(engine: Engine) -> dict[str, np.ndarray]:
    return {name: np.array(getattr(engine.state, name))
            for name in ("qs", "actions", "prev_action", "started", "obs", "stale")}


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_step_arguments_change_nothing(workers: int) -> None:
    model = grid_model(4)
    obs = np.ones((N, 2), dtype=np.int64)
    with Engine(model, N, workers=workers) as engine:
        engine.step(np.zeros((N, 2), dtype=np.int64))
        before = _snapshot(engine)
        for kwargs, message in BAD_STEP:
            with pytest.raises(ConfigError, match=f"Engine.step: {message}"):
                engine.step(obs, **kwargs)
            assert engine.tick == 1, kwargs
            after = _snapshot(engine)
            for name, values in before.items():
                np.testing.assert_array_equal(after[name], values, err_msg=f"{kwargs} {name}")
        engine.step(obs, budget_s=np.float32(5.0), level=np.int64(1))
        assert engine.tick == 2 and engine.last_tick.level == 1


class _World:
    def __init__(self) -> None:
        self.resets = 0

    def reset(self, seed: int) -> np.ndarray:
        self.resets += 1
        return np.zeros((N, 2), dtype=np.int64)

    def step(self, actions: np.ndarray) -> np.ndarray:
        return np.zeros((N, 2), dtype=np.int64)


@pytest.mark.parametrize("kwargs,message", [
    ({"hz": "10"}, "hz must be a finite number > 0"),
    ({"hz": float("nan")}, "hz must be a finite number > 0"),
    ({"hz": float("inf")}, "hz must be a finite number > 0"),
    ({"ticks": -1}, "ticks must be an int >= 0"),
    ({"ticks": 2.5}, "ticks must be an int >= 0"),
    ({"on_tick": 3}, "on_tick must be callable"),
])
def test_bad_run_arguments_are_refused_before_the_world_is_reset(kwargs: dict,
                                                                 message: str) -> None:
    world = _World()
    args = {"hz": 10.0, "ticks": 2, **kwargs}
    with Engine(grid_model(4), N, workers=0) as engine:
        with pytest.raises(ConfigError, match=f"Engine.run: {message}"):
            engine.run(world, **args)
        assert world.resets == 0 and engine.tick == 0


def test_load_agent_state_checks_the_tick_before_writing() -> None:
    model = grid_model(4)
    with Engine(model, N, workers=0) as engine:
        engine.step(np.zeros((N, 2), dtype=np.int64))
        saved = engine.agent_state()
        engine.step(np.ones((N, 2), dtype=np.int64))
        before = _snapshot(engine)
        for tick in ("3", -1, 2.5, 2**70):
            with pytest.raises(ConfigError, match="load_agent_state: tick must be an int"):
                engine.load_agent_state(saved, tick)
            assert engine.tick == 2
            for name, values in _snapshot(engine).items():
                np.testing.assert_array_equal(values, before[name], err_msg=name)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**70, 1.5, "0", True])
def test_seeds_outside_the_random_streams_range_are_refused(seed: object) -> None:
    model = grid_model(3)
    with pytest.raises(ConfigError, match=r"seed must be an int in 0\.\.2\*\*63-1"):
        Agents(model, 4, seed=seed)                                   # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"seed must be an int in 0\.\.2\*\*63-1"):
        Engine(model, 4, workers=0, seed=seed)                        # type: ignore[arg-type]
