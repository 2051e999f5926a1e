"""Compile into Numba's on-disk cache the kernels a long test session needs only after its first
minutes: the float64 step, the learning step (float64 and float32) and the stage entry points
``test_stages.py`` calls.

``tests/conftest.py`` runs this in a background process when a session starts, at the lowest
priority, so these cold compiles take the core the early tests leave idle; a test that needs a
kernel then loads it from the cache (or, if it comes first, compiles it as it would have).
Nothing here is asserted: the tests that use these kernels check them.
"""

from __future__ import annotations

import os

import numpy as np

from engine import Agents, InferenceConfig
from world.models import grid_model, random_model


def _step_once(agents: Agents) -> None:
    agents.step(np.zeros((agents.n, len(agents.model.num_obs)), dtype=np.int64))


def main() -> None:
    """Run each kernel once on two agents (the signatures the tests compile), at the lowest
    priority: only on CPU time the tests leave idle."""
    os.nice(19)
    _step_once(Agents(grid_model(3), 2, InferenceConfig(dtype="float64")))
    learner = random_model(np.random.default_rng(0), [3, 4], [3, 2], [2, 2], with_pA=True,
                           with_pB=True)
    for dtype in ("float64", "float32"):
        _step_once(Agents(learner, 2, InferenceConfig(learn_A=True, learn_B=True,
                                                      use_param_info_gain=True, dtype=dtype)))
    from tests.engine.kernels.test_stages import MODELS, STAGES, _case  # noqa: PLC0415

    case = _case(MODELS[0][1], seed=0)
    for compiled, reference, run in STAGES:
        run(compiled, reference, case)


if __name__ == "__main__":
    main()
