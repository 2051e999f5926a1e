"""Gymnasium's FrozenLake as a vector environment, one agentloop agent per sub-environment.

The agents' generative model is built from the environment's own transition table
(``env.unwrapped.P``, slippery moves included): hidden states are the lake's cells, the agents
see their cell (A is the identity; a noisier A works the same way), and C prefers the goal,
cells near it, and never a hole. ``GymnasiumVectorWorld`` maps the spaces to the model; agents
whose sub-environment starts a new episode are reset. Run:
``python examples/gymnasium_frozenlake.py`` (needs ``pip install -e '.[adapters]'``).
"""

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from engine import Agents, GenerativeModel, InferenceConfig
from world.adapters import GymnasiumVectorWorld

N_ENVS = 16
STEPS = 300


def lake_model(lake: gym.Env) -> GenerativeModel:
    """States and observations are cells; B is the lake's own P; C prefers the goal."""
    n_cells, n_actions = int(lake.observation_space.n), int(lake.action_space.n)
    B = np.zeros((n_cells, n_cells, n_actions))                  # B[next cell, cell, action]
    for cell, moves in lake.P.items():
        for action, outcomes in moves.items():
            for prob, next_cell, _reward, _terminated in outcomes:
                B[next_cell, cell, action] += prob
    tiles = lake.desc.ravel()
    rows, cols = np.divmod(np.arange(n_cells), lake.desc.shape[1])
    goal_row, goal_col = divmod(int(np.flatnonzero(tiles == b"G")[0]), lake.desc.shape[1])
    C = -0.5 * (abs(rows - goal_row) + abs(cols - goal_col))     # closer to the goal is better
    C[tiles == b"G"], C[tiles == b"H"] = 4.0, -8.0
    D = (tiles == b"S").astype(float)                            # episodes start on S
    return GenerativeModel(A=[np.eye(n_cells)], B=[B], C=[C], D=[D])


def play(world: GymnasiumVectorWorld, choose: Callable[[np.ndarray], np.ndarray],
         on_new_episode: Callable[[np.ndarray], None]) -> list[float]:
    """Run STEPS vector steps; the return of every episode that ended."""
    obs = world.reset(seed=0)
    running, returns = np.zeros(world.n_agents), []
    for _ in range(STEPS):
        if world.reset_mask.any():                               # these rows start afresh
            on_new_episode(np.flatnonzero(world.reset_mask))
        obs = world.step(choose(obs))
        running += world.rewards
        for i in np.flatnonzero(world.done):
            returns.append(float(running[i]))
            running[i] = 0.0
    return returns


env = gym.make_vec("FrozenLake-v1", num_envs=N_ENVS, vectorization_mode="sync")
model = lake_model(env.envs[0].unwrapped)
world = GymnasiumVectorWorld(env, model)

agents = Agents(model, N_ENVS, config=InferenceConfig(policy_len=3), seed=0)
returns = play(world, agents.step, lambda rows: agents.reset(rows, keep_action=False))
rng = np.random.default_rng(0)
baseline = play(world, lambda obs: rng.integers(0, 4, size=(len(obs), 1)), lambda rows: None)
env.close()

print(f"FrozenLake-v1 (slippery), {N_ENVS} sub-environments, {STEPS} steps")
print(f"agentloop agents: {len(returns)} episodes, mean return {np.mean(returns):.2f}; "
      f"first returns {returns[:10]}")
print(f"random actions:   {len(baseline)} episodes, mean return {np.mean(baseline):.2f}")
