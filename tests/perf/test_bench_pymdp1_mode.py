"""agentloop's pymdp 1.x mode in the zoo stage of ``agentloop bench`` (issue 19): its rows beside
the 0.0.7.1-semantics ones, held against the strongest pymdp 1.x form with the same step
settings; the child's step settings; ``--zoo-models``."""

from __future__ import annotations

import dataclasses
import io
import types
from typing import Any

import pytest

import perf.models
from perf.bench.cli import build_parser, config_from_args, main
from perf.bench.config import (
    AGENTLOOP_MT,
    AGENTLOOP_MT1,
    PYMDP,
    PYMDP1,
    PYMDP1_VMAP,
    QUICK,
    STEP_PARAMS,
    BenchConfig,
    count_units,
    zoo_pairs,
)
from perf.bench.figures import validate_results
from perf.bench.probes import Probes
from perf.bench.progress import Progress
from perf.bench.readme import readme_table, results_md_section
from perf.bench.report import PYMDP1_MODE_HEADERS, format_report, pymdp1_mode_rows
from perf.bench.runner import run
from perf.kernels.model_cost import model_step_cost
from perf.models import model_by_name
from perf.pymdp_jax import DEFAULT_PARAMS, step_params
from tests.perf.test_bench import TINY, FakeProbes

MODE_TINY = dataclasses.replace(
    TINY, stages=("zoo",), latency_models=("grid-5",), policy_lens=(1,), throughput_models=(),
    zoo_models=("tmaze", "multi-modal-4"), zoo_agents=1000, zoo_agents_long=10)


def _run(cfg: BenchConfig, probes_cls: type[FakeProbes] = FakeProbes) -> dict[str, Any]:
    progress = Progress(count_units(cfg), stream=io.StringIO())
    return run(cfg, "python -m perf --mode-test", probes_cls(cfg, progress), progress)


def test_pymdp1_mode_rows_beside_the_0071_rows() -> None:
    results = _run(MODE_TINY)
    assert validate_results(results) == []
    figures = {f["key"]: f for f in results["figures"]}
    rows = {(z["model"], z["policy_len"]): z for z in results["raw"]["zoo"]}
    assert set(rows) == {("tmaze", 1), ("tmaze", 3), ("multi-modal-4", 1), ("multi-modal-4", 3)}
    for (model, L), z in rows.items():
        n = z["n"]
        assert set(z["steps_per_s_per_repeat"]) == {AGENTLOOP_MT, AGENTLOOP_MT1, PYMDP1_VMAP,
                                                   PYMDP1} - ({PYMDP1} if n > 10 else set())
        assert z["step_params"] == STEP_PARAMS
        # the mode is no peer: the 0.0.7.1-semantics row is still held against the others
        assert z["strongest_peer"] not in (AGENTLOOP_MT, AGENTLOOP_MT1)
        mode = z["pymdp1_mode"]
        assert mode["peer"] in (PYMDP1_VMAP, PYMDP1)
        mode_fig = figures[f"zoo/{model}/L{L}/N={n}/{AGENTLOOP_MT1}"]
        assert mode["steps_per_s"] == pytest.approx(mode_fig["median"])
        # not like for like with pymdp 0.0.7.1, so no ratio to it and no --compare by it
        assert mode_fig["pymdp"] is None and mode_fig["compare_by"] is None
        vs = figures[f"zoo/{model}/L{L}/pymdp1-mode-vs-pymdp1"]
        assert vs["compare_by"] == "value" and vs["unit"] == "x" and vs["impl"] == AGENTLOOP_MT1
        assert vs["median"] == pytest.approx(mode["ratio"])
        assert "gamma 16.0" in vs["note"] and "num_iter 10" in vs["note"]
    # the fake mode steps at 2e-6 s/agent, the vmapped peer at 4e-6: about 2x at 1,000 agents
    mode = rows[("tmaze", 1)]["pymdp1_mode"]
    assert mode["peer"] == PYMDP1_VMAP and 1.5 < mode["ratio"] < 2.0
    # at 10 agents the batched Agent fits but is slower than the vmapped kernels
    assert rows[("tmaze", 3)]["pymdp1_mode"]["peer"] == PYMDP1_VMAP
    # the mode's share of the FLOP peak counts the per-modality gain
    per_mod = model_step_cost(model_by_name("multi-modal-4"), 1)["flops_per_modality_total"]
    share = figures[f"zoo/multi-modal-4/L1/flops/{AGENTLOOP_MT1}"]
    assert share["median"] == pytest.approx(
        100 * figures[f"zoo/multi-modal-4/L1/N=1000/{AGENTLOOP_MT1}"]["median"] * per_mod / 100e9)


def test_pymdp1_mode_tables() -> None:
    results = _run(MODE_TINY)
    rows = pymdp1_mode_rows(results)
    assert [r[:3] for r in rows] == [["tmaze", "1", "1,000"], ["tmaze", "3", "10"],
                                     ["multi-modal-4", "1", "1,000"], ["multi-modal-4", "3", "10"]]
    assert all(r[5] == "pymdp 1.x jit(vmap), shared model" for r in rows)
    assert rows[0][7].endswith("x")
    report = format_report(results)
    assert "agentloop pymdp1 mode steps/s" in report and "both sides: gamma 16.0" in report
    table = readme_table(results)
    assert "| " + " | ".join(PYMDP1_MODE_HEADERS) + " |" in table
    assert "| tmaze | 1 | 1,000 |" in table
    assert "pymdp1 mode / peer" in results_md_section(results)


def test_no_pymdp1_mode_without_its_peer_or_when_off() -> None:
    class NoJax(FakeProbes):
        def start_pymdp1(self) -> tuple[dict[str, Any] | None, str]:
            return None, "no venv in the test"

    results = _run(MODE_TINY, NoJax)
    assert all(z["pymdp1_mode"] is None for z in results["raw"]["zoo"])
    assert not any(f["impl"] == AGENTLOOP_MT1 for f in results["figures"])
    assert pymdp1_mode_rows(results) == [] and "pymdp1 mode" not in format_report(results)
    off = _run(dataclasses.replace(MODE_TINY, zoo_pymdp1_mode=False))
    assert all(z["pymdp1_mode"] is None for z in off["raw"]["zoo"])
    assert all(z["strongest_peer"] in (PYMDP1_VMAP, PYMDP1, PYMDP) for z in off["raw"]["zoo"])


def test_one_modality_models_get_no_pymdp1_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    real = perf.models.model_by_name

    def fake(name: str) -> Any:
        m = real(name)
        return types.SimpleNamespace(num_modalities=1) if name == "tmaze" else m

    monkeypatch.setattr(perf.models, "model_by_name", fake)
    from perf.bench.zoo import pymdp1_mode_wanted

    state = types.SimpleNamespace(cfg=MODE_TINY, pymdp1_ok=True)
    assert not pymdp1_mode_wanted(state, "tmaze")  # type: ignore[arg-type]
    assert pymdp1_mode_wanted(state, "multi-modal-4")  # type: ignore[arg-type]
    assert not pymdp1_mode_wanted(types.SimpleNamespace(  # type: ignore[arg-type]
        cfg=MODE_TINY, pymdp1_ok=False), "multi-modal-4")


def test_the_child_is_set_up_with_the_shared_step_params() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.asked: list[dict[str, Any]] = []

        def model_file(self, name: str, policy_len: int | None = None) -> str:
            return f"/nowhere/{name}-{policy_len}.npz"

        def ask(self, request: dict[str, Any]) -> dict[str, Any]:
            self.asked.append(request)
            return {"ok": True, "create_s": 0.1, "compile_s": 0.2, "bytes_per_agent": 8.0}

        def rss(self) -> int:
            return 0

    probes = Probes(QUICK, Progress(1, stream=io.StringIO(), enabled=False))
    peer = Recorder()
    probes.jax = peer  # type: ignore[assignment]
    probes.open_population("tmaze", 1, 5, PYMDP1_VMAP)
    probes.open_population("tmaze", 1, 5, PYMDP1)
    assert [r["kernel"] for r in peer.asked] == ["vmap", "agent"]
    assert all(r["params"] == STEP_PARAMS for r in peer.asked)
    probes.jax = None


def test_step_params_defaults_and_refusals() -> None:
    assert DEFAULT_PARAMS == STEP_PARAMS and step_params(None) == DEFAULT_PARAMS
    mine = step_params({"gamma": 1, "num_iter": 16, "sampling_mode": "full"})
    assert mine["gamma"] == 1.0 and isinstance(mine["gamma"], float)
    assert mine["num_iter"] == 16 and mine["alpha"] == 16.0 and mine["sampling_mode"] == "full"
    for bad, match in (({"beta": 1}, "unknown step params"), ({"num_iter": 0}, "num_iter"),
                       ({"sampling_mode": "joint"}, "sampling_mode"),
                       ({"action_selection": "greedy"}, "action_selection")):
        with pytest.raises(ValueError, match=match):
            step_params(bad)


def test_cli_zoo_models_only_changes_the_zoo() -> None:
    cfg = config_from_args(build_parser().parse_args(
        ["--models", "grid-10", "--zoo-models", "tmaze,multi-3x3"]))
    assert cfg.latency_models == ("grid-10",) and cfg.zoo_models == ("tmaze", "multi-3x3")
    assert zoo_pairs(cfg) == [("tmaze", 1), ("tmaze", 3), ("multi-3x3", 1), ("multi-3x3", 3)]


def test_cli_bad_zoo_model_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--zoo-models", "tmaze,nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--zoo-models: unknown model nope" in err


@pytest.mark.slow
def test_agentloop_population_in_the_pymdp1_mode() -> None:
    """The real in-process populations of both modes (compiles the kernel when the cache is
    cold): each steps, and the mode's agents run pymdp 1.x semantics with the shared
    settings."""
    probes = Probes(QUICK, Progress(1, stream=io.StringIO(), enabled=False))
    for impl, semantics in ((AGENTLOOP_MT, "pymdp0"), (AGENTLOOP_MT1, "pymdp1")):
        h = probes.open_population("tmaze", 1, 30, impl)
        try:
            assert h.step() > 0
            config = h.extra["config"]
            assert config["semantics"] == semantics
            assert {k: config[k] for k in STEP_PARAMS} == STEP_PARAMS
        finally:
            h.close()


@pytest.mark.slow
def test_pymdp1_child_runs_the_settings_it_is_given(real_jax_peer: Any) -> None:
    """The real pymdp 1.x child (skipped unless its venv works): every sampling mode and
    action selection, vmapped and batched, and a bad setting refused by name."""
    peer = real_jax_peer
    for kernel in ("vmap", "agent"):
        for params in ({}, {"sampling_mode": "full", "action_selection": "stochastic",
                            "gamma": 1.0, "alpha": 1.0, "num_iter": 16}):
            info = peer.ask({"op": "setup", "model": peer.model_file("tmaze", 2),
                             "policy_len": 2, "n": 3, "seed": 0, "kernel": kernel,
                             "params": params})
            assert info["params"] == {**DEFAULT_PARAMS, **params}
            assert len(peer.ask({"op": "time", "steps": 2})["times"]) == 2
    with pytest.raises(RuntimeError, match="unknown step params"):
        peer.ask({"op": "setup", "model": peer.model_file("tmaze", 1), "policy_len": 1,
                  "n": 1, "kernel": "vmap", "params": {"beta": 2}})


# ------------------------------------------------------------------- perf.stage_split
def test_stage_split_names_each_part() -> None:
    from perf.stage_split import VARIANTS, format_split

    us = dict(zip(VARIANTS, (5.0, 10.0, 6.0, 5.5, 2.0), strict=True))
    text = format_split("tmaze", 3, 1000, us)
    assert "tmaze policy_len 3, 1,000 agents" in text
    assert "information gain 4.00, utility 0.50, sweeps 2..num_iter 3.50" in text
    assert "selection) 2.00" in text


@pytest.mark.parametrize("case", ["tmaze:1", "nope:1:10"])
def test_stage_split_bad_case_exits_2(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    from perf.stage_split import main as split_main

    with pytest.raises(SystemExit) as exc:
        split_main([case])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_stage_split_runs_every_variant() -> None:
    """The real populations (compiles the kernel when the cache is cold)."""
    from perf.stage_split import VARIANTS, split

    us = split("tmaze", 1, 20, repeats=1, seconds=0.01)
    assert set(us) == set(VARIANTS) and all(v > 0 for v in us.values())
