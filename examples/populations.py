"""Several populations, each with its own model and inference settings, in one ``Engine``.

Walkers live on a 10 x 10 grid and plan one step ahead; scouts live on a 5 x 5 grid and plan
two. One ``engine.step`` takes a dict of observations keyed by population name and returns a
dict of actions. Run: ``python examples/populations.py``.
"""

import numpy as np

from engine import Engine, InferenceConfig, Population
from world.grid import GridWorld

N_WALKERS, N_SCOUTS = 2_000, 200
TICKS = 5

worlds = {"walkers": GridWorld(size=10, n_agents=N_WALKERS, seed=0),
          "scouts": GridWorld(size=5, n_agents=N_SCOUTS, seed=1)}
populations = [Population("walkers", worlds["walkers"].model(), N_WALKERS),
               Population("scouts", worlds["scouts"].model(), N_SCOUTS,
                          InferenceConfig(policy_len=2))]

with Engine(populations=populations, workers=2, seed=0) as engine:
    obs = {name: world.reset(0) for name, world in worlds.items()}
    for _ in range(TICKS):
        actions = engine.step(obs, budget_s=0.1)                 # dict in, dict out
        obs = {name: world.step(actions[name]) for name, world in worlds.items()}
    info = engine.last_tick
    print(f"{TICKS} ticks, last {info.wall_s * 1e3:.2f} ms, stale agents {info.stale_agents}")
    for name in worlds:
        moves = np.bincount(actions[name][:, 0], minlength=5).tolist()
        q_pi = engine.population(name).q_pi
        print(f"{name}: {len(actions[name])} agents, moves (stay, up, down, left, right) "
              f"{moves}, {q_pi.shape[1]} policies each")
