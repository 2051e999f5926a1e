"""world.adapters: PettingZoo parallel envs and Gymnasium vector envs driven by agentloop agents."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test

from engine import Engine, GenerativeModel, InferenceConfig
from world.adapters import (
    DiscreteLayout,
    GymnasiumVectorWorld,
    PettingZooWorld,
    RunTotals,
    run_gymnasium,
    run_pettingzoo,
)
from world.base import World

LENGTH = 5                 # corridor cells; agents start in the middle, goals at either end
CENTER = LENGTH // 2
CUE_START = 1              # the cue is Discrete(2, start=1): 1 = goal on the left, 2 = right


# ----------------------------------------------------------------------------- a PettingZoo env
class Corridor(ParallelEnv):
    """Each agent walks its own corridor; its goal end (left or right, drawn at reset) is cued.

    Observation: (cell, cue, at_goal), a Tuple of Discrete (the cue starts at 1) or, with
    ``multidiscrete=True``, the same as a MultiDiscrete. Action: Discrete(3, start=-1), a move.
    Reaching the goal gives reward 1 and terminates the agent; the episode is truncated after
    ``max_cycles`` steps.
    """

    metadata = {"name": "corridor_v0", "render_modes": []}

    def __init__(self, n_agents: int = 3, max_cycles: int = 10,
                 multidiscrete: bool = False) -> None:
        self.possible_agents = [f"a_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.max_cycles = max_cycles
        self.multidiscrete = multidiscrete
        self._rng = np.random.default_rng()

    @functools.cache  # noqa: B019 - PettingZoo wants the same object back
    def observation_space(self, agent: str) -> spaces.Space:
        if self.multidiscrete:
            return spaces.MultiDiscrete([LENGTH, 2, 2], start=[0, CUE_START, 0])
        return spaces.Tuple((spaces.Discrete(LENGTH), spaces.Discrete(2, start=CUE_START),
                             spaces.Discrete(2)))

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(3, start=-1)

    def _observe(self, agent: str) -> Any:
        cell, side = self._cell[agent], self._side[agent]
        at_goal = int(cell == (0 if side == 0 else LENGTH - 1))
        values = (cell, side + CUE_START, at_goal)
        if self.multidiscrete:
            return np.array(values, dtype=np.int64)
        return tuple(np.int64(v) for v in values)

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, Any], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self._cell = dict.fromkeys(self.agents, CENTER)
        self._side = {a: int(self._rng.integers(2)) for a in self.agents}
        self._t = 0
        return {a: self._observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        self._t += 1
        obs, rewards, terminated, truncated, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            move = int(actions[a])
            assert self.action_space(a).contains(move)
            self._cell[a] = int(np.clip(self._cell[a] + move, 0, LENGTH - 1))
            obs[a] = self._observe(a)
            reached = bool(obs[a][2])
            rewards[a] = 1.0 if reached else 0.0
            terminated[a] = reached
            truncated[a] = self._t >= self.max_cycles
            infos[a] = {}
        self.agents = [a for a in self.agents if not (terminated[a] or truncated[a])]
        return obs, rewards, terminated, truncated, infos


def corridor_model() -> GenerativeModel:
    """The agents' model of the corridor: factors (cell, goal side), modalities (cell, cue,
    at_goal); the cue reveals the side; at_goal is preferred."""
    A_cell = np.eye(LENGTH)
    A_cue = np.eye(2)
    A_goal = np.zeros((2, LENGTH, 2))
    A_goal[0] = 1.0
    for side, cell in ((0, 0), (1, LENGTH - 1)):
        A_goal[:, cell, side] = [0.0, 1.0]
    B_cell = np.zeros((LENGTH, LENGTH, 3))
    for s in range(LENGTH):
        for u, move in enumerate((-1, 0, 1)):
            B_cell[int(np.clip(s + move, 0, LENGTH - 1)), s, u] = 1.0
    B_side = np.eye(2)[:, :, None]
    D_cell = np.eye(LENGTH)[CENTER]
    return GenerativeModel(A=[A_cell, A_cue, A_goal], B=[B_cell, B_side],
                           C=[np.zeros(LENGTH), np.zeros(2), np.array([0.0, 4.0])],
                           D=[D_cell, np.full(2, 0.5)],
                           A_factor_list=[[0], [1], [0, 1]])


class RandomStepper:
    """Uniformly random actions for the controlled factors (the baseline)."""

    def __init__(self, action_spec: tuple[int, ...], n: int, seed: int) -> None:
        self.spec, self.n = action_spec, n
        self.rng = np.random.default_rng(seed)

    def step(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([self.rng.integers(0, u, size=self.n) for u in self.spec], axis=1)


CFG2 = InferenceConfig(policy_len=2)


def test_corridor_passes_the_pettingzoo_parallel_api_test() -> None:
    parallel_api_test(Corridor(), num_cycles=50)
    parallel_api_test(Corridor(multidiscrete=True), num_cycles=50)


@pytest.mark.parametrize("multidiscrete", [False, True])
def test_agents_reach_the_cued_goal_more_often_than_random(multidiscrete: bool) -> None:
    steps = 120                                    # 10 episodes of at most 12 steps
    model = corridor_model()
    agents = run_pettingzoo(Corridor(multidiscrete=multidiscrete), model, steps, config=CFG2,
                            seed=3)
    world = PettingZooWorld(Corridor(multidiscrete=multidiscrete), model)
    rand = run_pettingzoo(Corridor(multidiscrete=multidiscrete), model, steps, seed=3,
                          stepper=RandomStepper(world.action_spec, 3, seed=3))
    assert isinstance(agents, RunTotals) and agents.steps == steps
    # agents go straight to the cued end: 2 moves, then the reset step -> 40 episodes
    assert agents.episodes == 40
    assert sum(agents.total_reward.values()) == 3 * 40
    assert set(agents.total_reward) == {"a_0", "a_1", "a_2"}
    assert sum(rand.total_reward.values()) < 0.6 * 3 * rand.episodes
    assert sum(agents.total_reward.values()) > sum(rand.total_reward.values()) + 30


def test_pettingzoo_world_absent_agents_and_restart() -> None:
    model = corridor_model()
    env = Corridor(n_agents=2, max_cycles=10)
    world = PettingZooWorld(env, model)
    assert isinstance(world, World)
    assert world.observation_spec == (LENGTH, 2, 2) and world.action_spec == (3, 1)
    obs = world.reset(seed=0)
    sides = [env._side[a] for a in env.possible_agents]
    assert obs.tolist() == [[CENTER, s, 0] for s in sides]   # cue start offset removed
    assert world.active.all()
    # agent 0 walks to its goal; agent 1 stays put
    toward = 0 if sides[0] == 0 else 2
    for _ in range(2):
        obs = world.step(np.array([[toward, 0], [1, 0]]))
        assert not world.reset_mask.any()
    goal_cell = 0 if sides[0] == 0 else LENGTH - 1
    assert obs[0].tolist() == [goal_cell, sides[0], 1]
    assert world.rewards.tolist() == [1.0, 0.0]
    assert world.done.tolist() == [True, False] and world.terminated[0]
    assert world.active.tolist() == [False, True]
    assert world.final_observations[0].tolist() == obs[0].tolist()
    # the absent agent keeps its last observation and its (out-of-corridor) move is not sent
    for _ in range(8):
        before = obs[0].copy()
        obs = world.step(np.array([[2 - toward, 0], [1, 0]]))
        assert obs[0].tolist() == before.tolist() and world.rewards[0] == 0.0
    assert world.truncated[1] and world.episode_ended and world.episodes == 1
    assert not world.active.any()
    # the next step restarts with seed + 1; actions ignored
    obs = world.step(np.array([[0, 0], [0, 0]]))
    assert world.reset_mask.all() and world.active.all() and not world.episode_ended
    assert obs[:, 0].tolist() == [CENTER, CENTER]
    ref = Corridor(n_agents=2)
    ref.reset(seed=1)
    assert obs[:, 1].tolist() == [ref._side[a] for a in ref.possible_agents]
    assert world.config()["env"] == "corridor_v0" and world.config()["seed"] == 0


def test_pettingzoo_world_without_auto_reset_raises_at_episode_end() -> None:
    world = PettingZooWorld(Corridor(n_agents=1, max_cycles=1), corridor_model(),
                            auto_reset=False)
    world.reset(seed=0)
    world.step(np.array([[1, 0]]))
    assert world.episode_ended
    with pytest.raises(RuntimeError, match="auto_reset"):
        world.step(np.array([[1, 0]]))
    with pytest.raises(RuntimeError, match="reset"):
        PettingZooWorld(Corridor(), corridor_model()).step(np.zeros((3, 2), dtype=int))


def test_engine_works_as_a_stepper() -> None:
    model = corridor_model()
    with Engine(model, n_agents=3, workers=0, config=CFG2, seed=3) as engine:
        first = run_pettingzoo(Corridor(), model, 3, config=CFG2, seed=3, stepper=engine)
    assert first == run_pettingzoo(Corridor(), model, 3, config=CFG2, seed=3)
    assert first.episodes == 1 and sum(first.total_reward.values()) == 3.0
    # Engine has no reset(): beliefs carry over into later episodes, yet it keeps scoring
    with Engine(model, n_agents=3, workers=0, config=CFG2, seed=3) as engine:
        totals = run_pettingzoo(Corridor(), model, 30, config=CFG2, seed=3, stepper=engine)
    assert totals.episodes >= 2 and sum(totals.total_reward.values()) >= 3.0


# ----------------------------------------------------------------------------- Gymnasium
HOLES = (5, 7, 11, 12)
GOAL = 15
LEFT, DOWN, RIGHT, UP = range(4)


def frozen_lake_model() -> GenerativeModel:
    """FrozenLake 4x4, not slippery: 16 cells seen exactly, 4 moves (walls stop them). Holes
    and the goal end the episode, and the vector env restarts it on the next step: the model
    says so (from a hole or the goal every action leads to the start). C prefers the goal,
    dislikes holes and, so that a one-step horizon suffices, prefers cells nearer the goal."""
    B = np.zeros((16, 16, 4))
    for s in range(16):
        r, c = divmod(s, 4)
        for u, (dr, dc) in enumerate(((0, -1), (1, 0), (0, 1), (-1, 0))):
            nxt = 0 if s in HOLES or s == GOAL else (
                min(max(r + dr, 0), 3) * 4 + min(max(c + dc, 0), 3))
            B[nxt, s, u] = 1.0
    C = np.array([-(6 - (s // 4 + s % 4)) * 0.5 for s in range(16)])
    C[list(HOLES)] = -10.0
    C[GOAL] = 5.0
    return GenerativeModel(A=[np.eye(16)], B=[B], C=[C], D=[np.eye(16)[0]])


def frozen_lake(n: int, mode: AutoresetMode = AutoresetMode.NEXT_STEP) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: gymnasium.make("FrozenLake-v1", is_slippery=False)] * n,
                         autoreset_mode=mode)


def test_agents_reach_the_frozen_lake_goal() -> None:
    model = frozen_lake_model()
    steps = 70                                     # 6 moves + the reset step per episode
    totals = run_gymnasium(frozen_lake(4), model, steps, seed=0)
    world = GymnasiumVectorWorld(frozen_lake(4), model)
    rand = run_gymnasium(frozen_lake(4), model, steps, seed=0,
                         stepper=RandomStepper(world.action_spec, 4, seed=0))
    assert set(totals.total_reward) == {"env_0", "env_1", "env_2", "env_3"}
    assert totals.episodes == 40 and sum(totals.total_reward.values()) == 40.0
    assert sum(rand.total_reward.values()) <= 5.0
    assert isinstance(world, World)
    world.reset(seed=0)
    assert world.config() == {"name": "gymnasium-vector", "env": "FrozenLake-v1", "num_envs": 4,
                              "seed": 0, "autoreset_mode": "NextStep", "control_factors": [0]}


PATH = (DOWN, DOWN, RIGHT, DOWN, RIGHT, RIGHT)      # start -> goal, avoiding the holes


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_gymnasium_autoreset_modes(mode: AutoresetMode) -> None:
    world = GymnasiumVectorWorld(frozen_lake(2, mode), frozen_lake_model())
    assert world.autoreset_mode == mode.value
    world.reset(seed=0)
    for k, move in enumerate(PATH):
        obs = world.step(np.array([[move], [LEFT]]))
        assert world.done.tolist() == [k == len(PATH) - 1, False]
    assert world.rewards.tolist() == [1.0, 0.0] and world.episodes == 1
    assert world.final_observations[0, 0] == GOAL
    if mode == AutoresetMode.NEXT_STEP:
        assert obs[:, 0].tolist() == [GOAL, 0] and not world.reset_mask.any()
        obs = world.step(np.array([[RIGHT], [LEFT]]))        # the restart: action ignored
        assert world.reset_mask.tolist() == [True, False] and world.rewards[0] == 0.0
    else:
        assert world.reset_mask.tolist() == [True, False]
    assert obs[:, 0].tolist() == [0, 0]
    obs = world.step(np.array([[RIGHT], [LEFT]]))
    assert obs[:, 0].tolist() == [1, 0] and not world.reset_mask.any()


# ----------------------------------------------------------------------------- spaces, errors
def test_discrete_layout_flattens_and_restores_with_start_offsets() -> None:
    space = spaces.Tuple((spaces.Discrete(3, start=-1),
                          spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 0], [0, 2]]),
                          spaces.Dict({"b": spaces.MultiBinary(2), "d": spaces.Discrete(2)})))
    layout = DiscreteLayout(space)
    assert layout.sizes == (3, 2, 3, 4, 5, 2, 2, 2)
    assert layout.starts == (-1, 1, 0, 0, 2, 0, 0, 0)
    rng = np.random.default_rng(0)
    space.seed(0)
    for _ in range(20):
        sample = space.sample()
        flat = layout.flatten(sample)
        assert ((flat >= 0) & (flat < np.array(layout.sizes))).all()
        back = layout.unflatten(flat)
        assert space.contains(back)
        assert layout.flatten(back).tolist() == flat.tolist()
    rows = np.stack([rng.integers(0, s, size=6) for s in layout.sizes], axis=1)
    batch = layout.unflatten_batch(rows)
    assert layout.flatten_batch(batch, 6).tolist() == rows.tolist()
    assert DiscreteLayout(spaces.Discrete(4, start=10)).unflatten([3]) == 13
    with pytest.raises(ValueError, match=r"value 9 \(component 0\) is outside 10..13"):
        DiscreteLayout(spaces.Discrete(4, start=10), "obs").flatten(9)
    with pytest.raises(ValueError, match="index 4"):
        DiscreteLayout(spaces.Discrete(4, start=10)).unflatten([4])


def test_non_discrete_spaces_are_rejected_by_name() -> None:
    box = spaces.Box(0.0, 1.0, shape=(2,))
    with pytest.raises(ValueError, match=r"space\[1\] Box.* is not discrete"):
        DiscreteLayout(spaces.Tuple((spaces.Discrete(2), box)))

    class BoxCorridor(Corridor):
        @functools.cache  # noqa: B019
        def observation_space(self, agent: str) -> spaces.Space:
            return box

    with pytest.raises(ValueError, match="agent 'a_0' observation space Box"):
        PettingZooWorld(BoxCorridor(), corridor_model())
    env = SyncVectorEnv([lambda: gymnasium.make("CartPole-v1")])
    with pytest.raises(ValueError, match="observation space Box"):
        GymnasiumVectorWorld(env, frozen_lake_model())


def test_model_mismatches_are_named() -> None:
    model = corridor_model()
    small = GenerativeModel(A=[np.eye(LENGTH), np.eye(2), np.full((3, LENGTH, 2), 1 / 3)],
                            B=list(model.B), C=None, D=list(model.D),
                            A_factor_list=[[0], [1], [0, 1]])
    with pytest.raises(ValueError, match="modality 2 has 3 outcomes but agent 'a_0' "
                                         "observation space has 2"):
        PettingZooWorld(Corridor(), small)
    one_mod = GenerativeModel(A=[np.eye(LENGTH)], B=[model.B[0]], D=[model.D[0]])
    with pytest.raises(ValueError, match="the model has 1 modalities but agent 'a_0'"):
        PettingZooWorld(Corridor(), one_mod)
    B4 = np.concatenate([model.B[0], model.B[0][:, :, :1]], axis=2)
    four = GenerativeModel(A=list(model.A), B=[B4, model.B[1]], C=list(model.C),
                           D=list(model.D), A_factor_list=[[0], [1], [0, 1]])
    with pytest.raises(ValueError, match="control factor 0 has 4 actions but agent 'a_0' "
                                         "action space has 3"):
        PettingZooWorld(Corridor(), four)
    lake = frozen_lake_model()
    five = GenerativeModel(A=[np.eye(5)], B=[np.repeat(np.eye(5)[:, :, None], 4, axis=2)])
    with pytest.raises(ValueError, match="modality 0 has 5 outcomes but each sub-environment's "
                                         "observation space has 16"):
        GymnasiumVectorWorld(frozen_lake(1), five)
    three = GenerativeModel(A=list(lake.A), B=[lake.B[0][:, :, :3]], C=list(lake.C))
    with pytest.raises(ValueError, match="control factor 0 has 3 actions but each "
                                         "sub-environment's action space has 4"):
        GymnasiumVectorWorld(frozen_lake(1), three)
    with pytest.raises(ValueError, match="2 control factors"):
        PettingZooWorld(Corridor(), model, control_factors=[0, 1])


def test_adapter_problems_raise_world_error_and_stepper_is_the_engines() -> None:
    from engine import WorldError
    from engine.runtime.contracts import Stepper as EngineStepper
    from world.adapters import Stepper

    assert Stepper is EngineStepper
    with pytest.raises(WorldError, match=r"space\[1\] Box.* is not discrete"):
        DiscreteLayout(spaces.Tuple((spaces.Discrete(2), spaces.Box(0.0, 1.0, shape=(2,)))))
    with pytest.raises(WorldError, match="index 4"):
        DiscreteLayout(spaces.Discrete(4, start=10)).unflatten([4])
    with pytest.raises(WorldError, match="2 control factors"):
        PettingZooWorld(Corridor(), corridor_model(), control_factors=[0, 1])
