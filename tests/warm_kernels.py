"""Compile into Numba's on-disk cache the kernels a long test session needs only after its first
minutes: the float64 step's three entries (packed, serial and parallel) for each policy walk,
the learning step (float64 and float32) and the stage entry points ``test_stages.py`` calls.

``tests/conftest.py`` runs this in a background process when a session starts, at the lowest
priority, so these cold compiles take the core the early tests leave idle; a test that needs a
kernel then loads it from the cache (or, if it comes first, compiles it as it would have).
Nothing here is asserted: the tests that use these kernels check them.
"""

from __future__ import annotations

import os

import numpy as np

from engine import Agents, InferenceConfig
from engine.kernels.numba import step as numba_step
from engine.kernels.numba.step import SERIAL_BELOW
from world.models import grid_model, random_model, tmaze_model


def _step_once(agents: Agents) -> None:
    agents.step(np.zeros((agents.n, len(agents.model.num_obs)), dtype=np.int64))


def _step_serial(agents: Agents) -> None:
    obs = np.zeros((agents.n, len(agents.model.num_obs)), dtype=np.int64)
    kernel = numba_step.serial_kernel(numba_step.walk_of(agents._km))
    kernel(agents._kref, agents._kc, agents._agent_ids, obs, agents._qs, agents._prev_action,
           agents._started, agents._q_pi, agents._G, agents._actions, agents.seed, 0,
           agents._fscratch, agents._iscratch, agents._sizes, agents._kc.num_iter, 1)


def main() -> None:
    """Run each kernel once on two agents (the signatures the tests compile), at the lowest
    priority: only on CPU time the tests leave idle."""
    os.nice(19)
    config = InferenceConfig(dtype="float64")
    walks = (grid_model(3), tmaze_model(),                       # one factor, shared tail
             random_model(np.random.default_rng(0), [3, 2], [3, 2], [2, 2]))   # the tree
    for model in walks:
        small = Agents(model, 2, config)                          # the packed entry
        _step_once(small)
        _step_serial(small)                                       # what the workers call
        _step_once(Agents(model, SERIAL_BELOW, config, threads=min(2, small.threads)))
    learner = random_model(np.random.default_rng(0), [3, 4], [3, 2], [2, 2], with_pA=True,
                           with_pB=True)
    for dtype in ("float64", "float32"):
        _step_once(Agents(learner, 2, InferenceConfig(learn_A=True, learn_B=True,
                                                      use_param_info_gain=True, dtype=dtype)))
    from tests.engine.kernels.test_stages import MODELS, ROWS, _case  # noqa: PLC0415

    for compiled, reference, run, semantics in ROWS:
        run(compiled, reference, _case(MODELS[0][1], seed=0, semantics=semantics))


if __name__ == "__main__":
    main()
