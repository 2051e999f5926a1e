"""The factored walk against the joint-belief walks, pymdp 1.x mode: ``python -m
perf.factored_walk MODEL:POLICY_LEN:AGENTS ...``.

For each case two populations of the same model step side by side with the bench's step
settings (``perf.bench.config.STEP_PARAMS``), one with the factored walk forced and one with
it refused (``engine.model.factored_tables``' cost counts patched while its layout is built),
alternating for ``--repeats`` steps. Prints median microseconds per agent-step (wall, every
thread) and which walk the layout picks on its own.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

FORCED = {"factored": "joint_cost", "joint": "factored_cost"}


def compare(model: str, policy_len: int, n: int, repeats: int = 7,
            seed: int = 0) -> dict[str, float]:
    """Median us per agent-step of each walk, and ``picked`` (1.0: the layout's own choice
    is the factored walk)."""
    from engine import Agents, InferenceConfig
    from engine.model import factored_tables as ft
    from engine.model.layout import layout_of
    from perf.bench.config import STEP_PARAMS
    from perf.models import ENTRIES
    from world.process import ModelProcess

    build = ENTRIES[model].build
    config = InferenceConfig(policy_len=policy_len, **{**STEP_PARAMS, "semantics": "pymdp1"})
    pops = {}
    for label, patched in FORCED.items():
        original = getattr(ft, patched)
        setattr(ft, patched, lambda *args: 1 << 60)
        try:
            m = build()
            agents = Agents(m, n, config, seed=seed)
        finally:
            setattr(ft, patched, original)
        world = ModelProcess(m, n, np.random.default_rng(seed))
        for _ in range(2):
            world.advance(agents.step(world.observe()))
        pops[label] = (agents, world, [])
    for _ in range(repeats):
        for agents, world, times in pops.values():
            obs = world.observe()
            t0 = time.perf_counter()
            actions = agents.step(obs)
            times.append(time.perf_counter() - t0)
            world.advance(actions)
    out = {label: 1e6 * float(np.median(times)) / n for label, (_, _, times) in pops.items()}
    out["picked"] = float(layout_of(build(), config).F_sparse.shape[0] > 0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf.factored_walk``."""
    p = argparse.ArgumentParser(prog="python -m perf.factored_walk", description=__doc__)
    p.add_argument("cases", nargs="+", metavar="MODEL:POLICY_LEN:AGENTS")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    from perf.models import parse_case

    for case in args.cases:
        model, policy_len, agents = parse_case(p, case)
        us = compare(model, policy_len, agents, args.repeats)
        picked = "factored" if us["picked"] else "joint"
        print(f"{model} policy_len {policy_len}, {agents:,} agents: factored "
              f"{us['factored']:.2f} us, joint beliefs {us['joint']:.2f} us a step; the "
              f"layout picks {picked}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
