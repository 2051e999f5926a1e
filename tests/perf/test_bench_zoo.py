"""The zoo stage of ``agentloop bench`` (``perf.bench.zoo``) with stubbed measurements, its
configuration and command line, and the FLOP count of one step (``perf.kernels.model_cost``)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perf.bench.cli import build_parser, config_from_args, main
from perf.bench.config import (
    AGENTLOOP_MT,
    FULL,
    PYMDP,
    PYMDP1,
    PYMDP1_VMAP,
    QUICK,
    ZOO_DEFAULT_LENS,
    ZOO_MODELS,
    ZOO_POLICY_LENS,
    BenchConfig,
    count_units,
    latency_pairs,
    reference_pairs,
    zoo_pairs,
)
from perf.bench.figures import validate_results
from perf.bench.progress import Progress
from perf.bench.readme import readme_table, results_md_section
from perf.bench.report import format_report
from perf.bench.runner import run
from perf.bench.zoo import bound_sentence
from perf.kernels.model_cost import live_joint_fraction, model_step_cost, tree_nodes
from perf.models import ZOO, model_by_name, policy_lens_of
from tests.perf.test_bench import TINY, FakeProbes

ZOO_TINY = dataclasses.replace(
    TINY, stages=("latency", "zoo"), latency_models=("grid-5",), policy_lens=(1,),
    throughput_models=(), zoo_models=("dense-grid-10", "dense-grid-20", "epistemic-chain"),
    zoo_agents=20_000, zoo_agents_long=10, jax_memory_bytes=1e9)


def _run(cfg: BenchConfig, probes_cls: type[FakeProbes] = FakeProbes) -> dict[str, Any]:
    progress = Progress(count_units(cfg), stream=io.StringIO())
    return run(cfg, "python -m perf --zoo-test", probes_cls(cfg, progress), progress)


def test_config_matches_the_zoo() -> None:
    assert ZOO_MODELS == ZOO and FULL.zoo_models == ZOO
    for name in ZOO:
        assert ZOO_POLICY_LENS.get(name, ZOO_DEFAULT_LENS) == policy_lens_of(name)
    assert ("epistemic-chain", 4) in zoo_pairs(FULL)
    assert ("epistemic-chain", 1) not in zoo_pairs(FULL)
    assert len(zoo_pairs(FULL)) == 2 * len(ZOO) - 1
    assert zoo_pairs(QUICK) == [("dense-grid-10", 1)]
    assert set(zoo_pairs(FULL)) <= set(latency_pairs(FULL))
    no_zoo = dataclasses.replace(FULL, stages=("latency",))
    assert latency_pairs(no_zoo) == reference_pairs(no_zoo)


def test_zoo_stage_reports_each_model_against_the_strongest_peer() -> None:
    results = _run(ZOO_TINY)
    assert validate_results(results) == []
    figures = {f["key"]: f for f in results["figures"]}
    rows = {(z["model"], z["policy_len"]): z for z in results["raw"]["zoo"]}
    assert set(rows) == {("dense-grid-10", 1), ("dense-grid-10", 3), ("dense-grid-20", 1),
                         ("dense-grid-20", 3), ("epistemic-chain", 4)}
    assert rows[("dense-grid-10", 1)]["n"] == 20_000 and rows[("epistemic-chain", 4)]["n"] == 10
    ours = figures["zoo/dense-grid-10/L1/N=20000/agentloop-mt"]
    vmap = figures["zoo/dense-grid-10/L1/N=20000/pymdp-1.x-vmap"]
    assert ours["subject"] == "agentloop" and ours["compare_by"] == "ratio"
    assert ours["median"] > vmap["median"] > 0 and ours["pymdp"] == pytest.approx(1 / 6e-4)
    assert vmap["compare_by"] is None
    # the fake engine steps at 1e-6 s/agent, the vmapped peer at 4e-6: 4x, held per repeat
    vs = figures["zoo/dense-grid-10/L1/vs-strongest"]
    assert vs["compare_by"] == "value" and vs["unit"] == "x"
    assert vs["median"] == pytest.approx(rows[("dense-grid-10", 1)]["ratio_vs_strongest"])
    assert 3.0 < vs["median"] < 4.0 and "jit(vmap)" in vs["note"]
    assert rows[("dense-grid-10", 1)]["strongest_peer"] == PYMDP1_VMAP
    # shares of the FLOP peak: agentloop and every peer; 0.0.7.1 against one thread
    for impl in (AGENTLOOP_MT, PYMDP1_VMAP, PYMDP):
        assert figures[f"zoo/dense-grid-10/L1/flops/{impl}"]["median"] > 0
    cost = model_step_cost(model_by_name("dense-grid-10"), 1)
    expected = 100 * ours["median"] * cost["flops_total"] / 100e9          # 2 threads: 100
    assert figures["zoo/dense-grid-10/L1/flops/agentloop-mt"]["median"] == \
        pytest.approx(expected)
    assert rows[("dense-grid-10", 1)]["bound"]
    assert rows[("dense-grid-10", 1)]["latency_us"]["agentloop"] == pytest.approx(10.0)
    # the batched Agent copies A and B per agent: dense-grid-20 at 20,000 does not fit 1 GB
    whats = {nm["what"]: nm["reason"] for nm in results["not_measured"]}
    assert "GB > pymdp 1.x memory limit" in whats["zoo dense-grid-20 L=1 N=20,000 pymdp 1.x (JAX)"]
    assert f"zoo/dense-grid-20/L1/N=20000/{PYMDP1}" not in figures
    # the tables
    table = readme_table(results)
    assert "Per model" in table and "| epistemic-chain | 4 | 10 |" in table
    assert "pymdp 1.x jit(vmap), shared model" in table
    dense = next(line for line in table.splitlines()
                 if line.startswith("| agent-steps/s, 20,000 agents, dense-grid-10 policy_len 1"))
    assert "(jit(vmap), one shared model)" in dense
    assert "Per model (the zoo):" in format_report(results)
    assert "Per model" in results_md_section(results)


def test_zoo_without_jax_holds_agentloop_against_pymdp_0071() -> None:
    class NoJax(FakeProbes):
        def start_pymdp1(self) -> tuple[dict[str, Any] | None, str]:
            return None, "no venv in the test"

    cfg = dataclasses.replace(ZOO_TINY, zoo_models=("dense-grid-10",), zoo_policy_lens=(1,))
    results = _run(cfg, NoJax)
    [row] = results["raw"]["zoo"]
    assert row["strongest_peer"] == PYMDP and set(row["steps_per_s_per_repeat"]) == {
        AGENTLOOP_MT}
    assert row["ratio_vs_strongest"] == pytest.approx(row["steps_per_s_per_repeat"][
        AGENTLOOP_MT][0] * 6e-4)


def test_zoo_failure_is_a_note_and_the_run_goes_on() -> None:
    class Broken(FakeProbes):
        def zoo_cost(self, model: str, policy_len: int, live_fraction: float = 1.0
                     ) -> dict[str, Any]:
            raise ValueError("no cost in the test")

    cfg = dataclasses.replace(ZOO_TINY, zoo_models=("dense-grid-10",), zoo_policy_lens=(1,))
    results = _run(cfg, Broken)
    assert any("no cost in the test" in nm["reason"] for nm in results["not_measured"])
    assert validate_results(results) == []


def test_bound_sentence() -> None:
    assert bound_sentence(1e6, 60.0, 1.0).startswith("arithmetic")
    assert bound_sentence(1e6, 5.0, 70.0).startswith("memory bandwidth")
    assert bound_sentence(1e3, 1.0, 1.0).startswith("fixed costs per step")
    assert bound_sentence(1e6, 5.0, 2.0).startswith("neither arithmetic (5%")
    assert bound_sentence(1e6, None, None).startswith("not known")


# ------------------------------------------------------------------------------------ CLI
def test_cli_models_policy_lens_and_zoo_agents() -> None:
    args = build_parser().parse_args(["--models", "dense-grid-10,tmaze", "--policy-lens", "2",
                                      "--zoo-agents", "100,7"])
    cfg = config_from_args(args)
    assert cfg.zoo_models == cfg.latency_models == ("dense-grid-10", "tmaze")
    assert cfg.zoo_policy_lens == (2,) and (cfg.zoo_agents, cfg.zoo_agents_long) == (100, 7)
    assert zoo_pairs(cfg) == [("dense-grid-10", 2), ("tmaze", 2)]
    one = config_from_args(build_parser().parse_args(["--zoo-agents", "50"]))
    assert (one.zoo_agents, one.zoo_agents_long) == (50, 50)


@pytest.mark.parametrize("argv", [["--zoo-agents", "1,2,3"], ["--zoo-agents", "0"],
                                  ["--models", "dense-grid-7"]])
def test_bad_zoo_values_are_one_line_and_exit_2(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m perf: error:")


# ------------------------------------------------------------------------------ FLOP count
def test_tree_nodes_share_prefixes() -> None:
    grid = model_by_name("grid-10")
    assert tree_nodes(grid.policies_for(1)) == 5
    assert tree_nodes(grid.policies_for(3)) == 5 + 25 + 125
    assert tree_nodes(model_by_name("epistemic-chain").policies_for(4)) == 5 + 25 + 125 + 625
    assert tree_nodes(model_by_name("multi-3x3").policies_for(2)) == 6 + 36


def test_model_cost_counts_joint_outcomes_from_the_structure() -> None:
    dense = model_step_cost(model_by_name("dense-grid-10"), 1)
    sparse = model_step_cost(model_by_name("grid-10"), 1)
    assert dense["joint_terms"] == 100 * 300                         # every entry non-zero
    assert dense["flops"]["tree_joint_outcomes"] == 2 * 100 * 300 * 5
    A = model_by_name("grid-10").A
    per_state = (A[0] > 0).sum(axis=0) * (A[1] > 0).sum(axis=0)
    assert sparse["joint_terms"] == per_state.sum() < dense["joint_terms"] / 10
    assert dense["flops_total"] > 10 * sparse["flops_total"] / 2
    for name in ZOO:
        for L in policy_lens_of(name):
            c = model_step_cost(model_by_name(name), L)
            assert c["flops_total"] > 0 and c["bytes_total"] > 0
            assert c["flops_per_modality_total"] <= c["flops_total"]
    mm = model_step_cost(model_by_name("multi-modal-4"), 1)
    assert mm["O_joint"] == 12 * 10 * 8 * 6 and mm["S"] == 36
    assert mm["joint_terms"] == 36 * mm["O_joint"]                   # dense modalities
    assert mm["flops_total"] > 20 * mm["flops_per_modality_total"]


def test_model_cost_follows_factorised_likelihoods() -> None:
    chain = model_by_name("epistemic-chain")
    c = model_step_cost(chain, 1)
    expanded = [np.count_nonzero(a, axis=0).ravel() for a in chain.full_A()]
    assert c["joint_terms"] == float(np.prod(np.stack(expanded), axis=0).sum())
    assert c["S"] == 280 and c["O_joint"] == 35 * 5 * 3 * 3


def test_write_model_carries_policies_and_E(tmp_path: Path) -> None:
    from perf.pymdp_jax import write_model

    m = model_by_name("tmaze")
    pol = m.policies_for(2)
    write_model(tmp_path / "t.npz", list(m.A), list(m.B), list(m.C), list(m.D),
                [list(x) for x in m.A_factor_list], list(m.control_fac_idx),
                E=m.prior_over_policies(len(pol)), policies=pol)
    data = np.load(tmp_path / "t.npz")
    assert np.array_equal(data["policies"], pol) and data["E"].shape == (16,)


def test_live_fraction_scales_the_joint_gain_only() -> None:
    qs = [np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4]),
          np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])]
    # per agent: 2/4 * 1/2, 1/4 * 2/2, 4/4 * 2/2 -> median 0.25
    assert live_joint_fraction(qs, np.random.default_rng(0)) == pytest.approx(0.25)
    model = model_by_name("dense-grid-10")
    full, tenth = model_step_cost(model, 1), model_step_cost(model, 1, live_fraction=0.1)
    assert tenth["flops"]["tree_joint_outcomes"] == pytest.approx(
        0.1 * full["flops"]["tree_joint_outcomes"])
    assert tenth["flops_per_modality_total"] == full["flops_per_modality_total"]
    assert tenth["flops"]["infer_states"] == full["flops"]["infer_states"]
    assert tenth["live_fraction"] == 0.1


@pytest.mark.slow
def test_agentloop_population_reports_its_live_fraction() -> None:
    """The real in-process population (compiles the kernel when the cache is cold)."""
    from perf.bench.probes import Probes

    cfg = dataclasses.replace(FULL, seed=0)
    probes = Probes(cfg, Progress(1, stream=io.StringIO(), enabled=False))
    h = probes.open_population("tmaze", 1, 30, AGENTLOOP_MT)
    try:
        assert h.step() > 0
        assert h.live_fraction is not None and 0.0 < h.live_fraction() <= 1.0
    finally:
        h.close()


@pytest.mark.slow
def test_pymdp1_vmap_kernel_steps_zoo_models(real_jax_peer: Any) -> None:
    """The real pymdp 1.x child's functional kernels (skipped unless the pymdp 1.x venv works)."""
    peer = real_jax_peer
    for model, L in (("dense-grid-10", 1), ("tmaze", 2), ("multi-3x3", 1),
                     ("epistemic-chain", 1)):
        info = peer.ask({"op": "setup", "model": peer.model_file(model, L),
                         "policy_len": L, "n": 4, "seed": 0, "kernel": "vmap"})
        assert info["compile_s"] > 0 and info["bytes_per_agent"] > 0
        times = peer.ask({"op": "time", "steps": 2})["times"]
        assert len(times) == 2 and all(t > 0 for t in times)
    with pytest.raises(RuntimeError, match="unknown kernel"):
        peer.ask({"op": "setup", "model": peer.model_file("tmaze", 1), "policy_len": 1,
                  "n": 1, "kernel": "nonsense"})
