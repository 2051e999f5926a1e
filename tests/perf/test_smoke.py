"""Smoke test of the kernel benchmark (``perf.kernels``) on a tiny configuration.

Marked slow (skipped by default; run with ``pytest -m slow tests/perf/test_smoke.py``): it
compiles kernels, spawns child processes and drives pymdp.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from engine import Agents, InferenceConfig
from perf.kernels.cli import main as kernels_main
from perf.kernels.cost import belief_support, step_cost
from perf.kernels.plan import QUICK
from perf.kernels.report import format_report
from perf.kernels.suite import run
from perf.models import MODELS, STANDARD_MODELS, model_by_name
from world.models import grid_transitions
from world.process import ModelProcess

pytestmark = pytest.mark.slow

TINY = dataclasses.replace(
    QUICK, models=("grid-5",), policy_lens=(1,), sizes=(1, 70), threads=(1,),
    warmup_steps=1, timed_steps=2, min_timed_seconds=0.0, latency_steps=5,
    pymdp_long_policy_steps=3, latency_budget_s=2.0, latency_min_steps=2, rss_agents=200,
    memory_sample_agents=10, support_sample_agents=20, matmul_n=64, matmul_repeats=1,
    copy_mb=1, copy_repeats=1,
)


def test_models_by_name() -> None:
    assert set(STANDARD_MODELS) == {"grid-5", "grid-10", "grid-20"}
    assert "multi-3x3" in MODELS
    assert model_by_name("grid-5").num_states == (25,)
    assert model_by_name("multi-3x3").num_states == (6, 4, 3)
    assert model_by_name("grid-10") is STANDARD_MODELS["grid-10"]
    with pytest.raises(KeyError):
        model_by_name("grid-7")


def test_world_follows_grid_moves() -> None:
    model = model_by_name("grid-5")
    world = ModelProcess(model, 50, np.random.default_rng(0))
    B = grid_transitions(5)
    for _ in range(5):
        obs = world.observe()
        assert obs.shape == (50, 2)
        assert (obs[:, 0] < 25).all() and (obs[:, 1] < 3).all()
        before = world.state[:, 0].copy()
        actions = np.random.default_rng(1).integers(0, 5, size=(50, 1))
        world.advance(actions)
        expected = B[:, before, actions[:, 0]].argmax(axis=0)
        assert np.array_equal(world.state[:, 0], expected)


def test_step_cost_counts_tree_nodes() -> None:
    model = model_by_name("grid-5")
    agents = Agents(model, 3, InferenceConfig(policy_len=2))
    agents.step(ModelProcess(model, 3, np.random.default_rng(0)).observe())
    support = belief_support(agents, 10, np.random.default_rng(0))
    assert 1 <= support.states <= 25
    cost = step_cost(agents, support)
    assert cost is not None and cost["tree_nodes"] == 5 + 25 and cost["P"] == 25
    assert cost["flops_total"] > 0 and cost["bytes_total"] > 2 * 25 * 4
    assert step_cost(Agents(model_by_name("multi-3x3"), 1), None) is None


def test_tiny_run_writes_report(tmp_path) -> None:  # noqa: ANN001
    results = run(TINY, "tiny")
    text = format_report(results)
    impls = {row["impl"] for row in results["latency"]}
    assert {"numba", "reference"} <= impls
    assert [(r["n"], r["threads"]) for r in results["throughput"]] == [(1, 1), (70, 1)]
    for row in results["throughput"]:
        assert row["steps_per_s_min"] <= row["steps_per_s_median"] <= row["steps_per_s_max"]
        assert row["gflops"] > 0
        if "pymdp" in impls:
            assert row["ratio_vs_pymdp"] > 0
    assert results["memory"][0]["per_agent_bytes"] >= 25 * 4
    assert results["rss"]["n"] == 200
    assert "Throughput" in text and "grid-5" in text
    path = tmp_path / "out.json"
    assert kernels_main(["--quick", "--models", "grid-5", "--policy-lens", "1", "--sizes", "1",
                         "--threads", "1", "--latency-steps", "3", "--rss-agents", "0",
                         "--no-pymdp", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["benchmark"] == "kernels"
