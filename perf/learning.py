"""Learning populations in the engine: ``python -m perf.learning``.

Runs pymdp's T-maze agents (learning the reward likelihood, as pymdp's learning demo) through
``Engine`` at a fixed rate, beside the same population without learning, and prints the tick
times (p50/p99 of the engine step), missed ticks, agent-steps/s and stale agent-ticks of each;
then the bytes of parameters per agent of several learning models. Observations come from the
model's generative process (``world.process.ProcessWorld``).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from engine import Agents, Engine, GenerativeModel, InferenceConfig
from engine.runtime.sizing import learnt_bytes
from world.models import random_model, tmaze_model
from world.process import ProcessWorld
from world.registry import make_world


def tmaze_learning() -> tuple[GenerativeModel, InferenceConfig]:
    """The T-maze with priors like its A, learning the reward modality (pymdp's demo)."""
    model = tmaze_model().with_priors(pA_scale=1.0)
    return model, InferenceConfig(learn_A=True, modalities_to_learn=(1,))


def run_case(model: GenerativeModel, config: InferenceConfig, agents: int, hz: float,
             ticks: int, workers: int) -> dict[str, float]:
    """One fixed-rate run: the engine's figures."""
    world = ProcessWorld(model, agents)
    stale = 0
    with Engine(model, agents, workers=workers, config=config, seed=1) as engine:
        engine.warm_up(world.reset(1))

        def on_tick(info) -> None:  # noqa: ANN001
            nonlocal stale
            stale += info.stale_agents

        began = time.monotonic()
        summary = engine.run(world, hz, ticks, on_tick=on_tick)
        wall = time.monotonic() - began
    return {"p50_ms": 1e3 * summary.tick_s_p50, "p99_ms": 1e3 * summary.tick_s_p99,
            "missed": summary.missed, "ticks": summary.ticks,
            "agent_steps_per_s": (agents * summary.ticks - stale) / wall,
            "stale_share": stale / (agents * summary.ticks)}


def in_process_rate(model: GenerativeModel, config: InferenceConfig, agents: int,
                    threads: int, repeats: int = 5, steps: int = 10) -> float:
    """Agent-steps/s of ``Agents`` (Numba) stepping ``agents`` agents with ``threads``
    threads: the best of ``repeats`` runs of ``steps`` steps on random observations."""
    rng = np.random.default_rng(0)
    obs = [np.ascontiguousarray(np.stack([rng.integers(0, o, size=agents)
                                          for o in model.num_obs], axis=1))
           for _ in range(steps)]
    population = Agents(model, agents, config, seed=1, threads=threads)
    population.step(obs[0])
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        for o in obs:
            population.step(o)
        best = min(best, (time.perf_counter() - began) / steps)
    return agents / best


def dense_bytes(model: GenerativeModel, config: InferenceConfig) -> int:
    """Bytes per agent of the layout before each agent stored only its own entries: A and pA
    whole (over every factor) learning A, B and pB whole learning B."""
    a_full = math.prod(model.num_states) * sum(model.num_obs)
    b = sum(s * s * u for s, u in zip(model.num_states, model.num_controls, strict=True))
    return 16 * (a_full * bool(config.learn_A) + b * bool(config.learn_B))


def bytes_table() -> list[tuple[str, int, int]]:
    """Parameter bytes per agent of the learning models (priors like their arrays, as
    ``agentloop run --learn`` gives them): each agent's own entries, and the dense rows."""
    tmaze = tmaze_model()
    two = random_model(np.random.default_rng(0), [3, 4], [4, 3], [3, 2])
    foraging = make_world("foraging", 5, 1).model()
    rows = []
    demo_model, demo_config = tmaze_learning()
    rows.append(("tmaze, learn A of the reward modality (the demo)",
                 learnt_bytes(demo_model, demo_config), dense_bytes(demo_model, demo_config)))
    for name, model in (("tmaze", tmaze), ("random 2-factor (4x3 states)", two),
                        ("foraging-5", foraging)):
        model = model.with_priors(pA_scale=1.0, pB_scale=1.0)
        for learn in ("A", "B", "AB"):
            config = InferenceConfig(learn_A="A" in learn, learn_B="B" in learn)
            rows.append((f"{name}, learn {learn}", learnt_bytes(model, config),
                         dense_bytes(model, config)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.learning", description=__doc__)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--bytes-only", action="store_true",
                        help="print only the bytes per agent of each learning model")
    parser.add_argument("--in-process", type=int, default=0, metavar="THREADS",
                        help="instead: agent-steps/s of Agents stepping --agents T-maze agents "
                             "in this process with THREADS threads (learning A of the reward "
                             "modality, learning A and B, no learning; priors like A and B)")
    args = parser.parse_args(argv)
    if args.in_process:
        model = tmaze_model().with_priors(pA_scale=1.0, pB_scale=1.0)
        for label, cfg in (("learn A, reward", InferenceConfig(learn_A=True,
                                                               modalities_to_learn=(1,))),
                           ("learn A and B", InferenceConfig(learn_A=True, learn_B=True)),
                           ("no learning", InferenceConfig())):
            rate = in_process_rate(model, cfg, args.agents, args.in_process)
            print(f"tmaze {label}: {rate:,.0f} agent-steps/s in process "
                  f"({args.agents:,} agents, {args.in_process} threads, best of 5 x 10 steps)")
        return
    ticks = max(1, int(args.duration * args.hz))
    model, config = tmaze_learning()
    results: dict[str, dict[str, float]] = {}
    for label, cfg in (() if args.bytes_only else (("learning", config),
                                                   ("no learning", InferenceConfig()))):
        results[label] = run_case(model, cfg, args.agents, args.hz, ticks, args.workers)
        r = results[label]
        print(f"tmaze {label}: {args.agents:,} agents at {args.hz:g} Hz, {r['ticks']} ticks: "
              f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (budget "
              f"{1e3 / args.hz:.0f} ms), missed {r['missed']}, "
              f"{r['agent_steps_per_s']:,.0f} agent-steps/s, stale {r['stale_share']:.1%}")
    if results:
        ratio = (results["learning"]["agent_steps_per_s"]
                 / results["no learning"]["agent_steps_per_s"])
        print(f"learning / no learning agent-steps/s: {ratio:.2f}")
    table = bytes_table()
    for name, size, dense in table:
        print(f"{name}: {size:,} bytes of parameters per agent ({dense:,} as dense rows)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results,
                       "bytes": {name: size for name, size, _ in table},
                       "dense_bytes": {name: dense for name, _, dense in table}}, fh, indent=1)


if __name__ == "__main__":
    main()
