"""Where a step's time goes in agentloop's pymdp 1.x mode: ``python -m perf.stage_split
MODEL:POLICY_LEN:AGENTS ...``.

Each population runs the bench's step settings (``perf.bench.config.STEP_PARAMS``) with one part
of the step switched off through ``InferenceConfig`` (the information gain; the utility; all but
one fixed-point sweep), alternating between variants for ``--repeats`` repeats; the differences
of the medians are each part's cost. Prints microseconds per agent-step (wall time, every
thread). No engine code is instrumented, so the split is as good as the machine is quiet.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

#: The variants, each the bench's settings with these fields changed.
VARIANTS: dict[str, dict[str, Any]] = {
    "pymdp0 (0.0.7.1 semantics)": {"semantics": "pymdp0"},
    "pymdp1": {"semantics": "pymdp1"},
    "pymdp1, no gain": {"semantics": "pymdp1", "use_states_info_gain": False},
    "pymdp1, no gain, no utility": {"semantics": "pymdp1", "use_states_info_gain": False,
                                    "use_utility": False},
    "pymdp1, no gain, no utility, 1 sweep": {"semantics": "pymdp1", "use_states_info_gain": False,
                                             "use_utility": False, "num_iter": 1},
}


def split(model: str, policy_len: int, n: int, repeats: int = 3, seconds: float = 0.6,
          seed: int = 0) -> dict[str, float]:
    """Median microseconds per agent-step of each of :data:`VARIANTS` on ``n`` agents."""
    import numpy as np

    from engine import Agents, InferenceConfig
    from perf.bench.config import STEP_PARAMS
    from perf.models import model_by_name
    from world.process import ModelProcess

    m = model_by_name(model)
    pops = {}
    for name, change in VARIANTS.items():
        config = InferenceConfig(policy_len=policy_len, **{**STEP_PARAMS, **change})
        agents = Agents(m, n, config, seed=seed)
        world = ModelProcess(m, n, np.random.default_rng(seed))
        for _ in range(2):                                  # compile, leave the first step
            world.advance(agents.step(world.observe()))
        pops[name] = (agents, world)
    medians: dict[str, list[float]] = {name: [] for name in pops}
    for _ in range(repeats):
        for name, (agents, world) in pops.items():
            times: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(times) < 2:
                obs = world.observe()
                t0 = time.perf_counter()
                actions = agents.step(obs)
                times.append(time.perf_counter() - t0)
                world.advance(actions)
            medians[name].append(float(np.median(times)))
    return {name: 1e6 * float(np.median(v)) / n for name, v in medians.items()}


def format_split(model: str, policy_len: int, n: int, us: dict[str, float]) -> str:
    """The printed split: every variant, then each part's cost (differences of medians)."""
    full, no_gain = us["pymdp1"], us["pymdp1, no gain"]
    bare, one = us["pymdp1, no gain, no utility"], us["pymdp1, no gain, no utility, 1 sweep"]
    lines = [f"{model} policy_len {policy_len}, {n:,} agents: us per agent-step (wall, median)"]
    lines += [f"  {name:38s} {value:10.2f}" for name, value in us.items()]
    lines += [f"  -> information gain {full - no_gain:.2f}, utility {no_gain - bare:.2f}, "
              f"sweeps 2..num_iter {bare - one:.2f}, rest (tree walk: predicted states and "
              f"joint beliefs; 1 sweep; selection) {one:.2f}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf.stage_split``."""
    p = argparse.ArgumentParser(prog="python -m perf.stage_split", description=__doc__)
    p.add_argument("cases", nargs="+", metavar="MODEL:POLICY_LEN:AGENTS")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.6, help="timed per variant and repeat")
    args = p.parse_args(argv)
    from perf.models import parse_case

    for case in args.cases:
        model, policy_len, agents = parse_case(p, case)
        us = split(model, policy_len, agents, args.repeats, args.seconds)
        print(format_split(model, policy_len, agents, us), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
