"""The benchmark report's logic (``perf.bench``), without running a real benchmark.

Covers the regression check (``--compare``), the regeneration of the marked section of
``perf/RESULTS.md``, the shape of the results of a tiny run whose measurements are stubbed, the
held-rate search and the command line's errors. Nothing here times anything or spawns workers.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from perf.bench.cli import add_parsers, build_parser, config_from_args, main
from perf.bench.compare import compare, format_comparison
from perf.bench.config import (
    AGENTLOOP_MT1,
    FULL,
    MARK_END,
    MARK_START,
    PYMDP,
    PYMDP1,
    PYMDP1_VMAP,
    QUICK,
    REFERENCE,
    SCHEMA,
    BenchConfig,
    count_units,
)
from perf.bench.figures import make_figure, validate_results
from perf.bench.held import largest_held
from perf.bench.peers import JaxPeer
from perf.bench.plots import write_plots
from perf.bench.probes import PopulationHandle, Probes
from perf.bench.progress import Progress
from perf.bench.readme import (
    readme_table,
    results_md_section,
    update_marked_section,
    write_results_md,
)
from perf.bench.report import format_report
from perf.bench.runner import run


# ------------------------------------------------------------------------------------ helpers
def _report(*figures: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "command": "python -m perf", "started": "2026-11-25T10:00",
            "host": "test", "figures": list(figures), "not_measured": []}


def _ratio_fig(key: str, ratio: float | None) -> dict[str, Any]:
    # a latency figure whose pymdp value makes the ratio come out as asked
    fig = make_figure(key, "step latency", key, "agentloop", "us", "lower", [10.0],
                      None if ratio is None else 10.0 * ratio)
    assert fig["compare_by"] == "ratio"
    return fig


# ------------------------------------------------------------------------------------ compare
def test_ratio_fifteen_percent_worse_is_flagged_five_percent_is_not() -> None:
    old = _report(_ratio_fig("a", 100.0), _ratio_fig("b", 100.0), _ratio_fig("c", 100.0))
    new = _report(_ratio_fig("a", 85.0), _ratio_fig("b", 95.0), _ratio_fig("c", 130.0))
    cmp = compare(old, new)
    assert [r["key"] for r in cmp["regressions"]] == ["a"]
    assert cmp["regressions"][0]["worse_by"] == pytest.approx(0.15)
    assert {c["key"] for c in cmp["compared"]} == {"a", "b", "c"}
    assert cmp["missing"] == []
    text = format_comparison(cmp, "old.json")
    assert "WORSE" in text and "15.0%" in text and " a " in text


def test_missing_figures_are_reported_not_crashed() -> None:
    old = _report(_ratio_fig("kept", 10.0), _ratio_fig("gone", 10.0),
                  _ratio_fig("no-ratio-now", 10.0))
    new = _report(_ratio_fig("kept", 10.0), _ratio_fig("no-ratio-now", None),
                  {"key": "junk"}, "not even a dict")                  # type: ignore[arg-type]
    cmp = compare(old, new)
    assert cmp["regressions"] == []
    assert {m["key"]: m["why"] for m in cmp["missing"]} == {
        "gone": "absent from the new results", "no-ratio-now": "no ratio in the new run"}
    assert "missing" in format_comparison(cmp)


def test_value_figures_compare_in_their_direction_and_peers_are_not_compared() -> None:
    def agree(v: float) -> dict[str, Any]:
        return make_figure("q", "quantization", "q", "uint16", "%", "higher", [v],
                           compare_by="value", subject="agentloop")

    def kl(v: float) -> dict[str, Any]:
        return make_figure("kl", "quantization", "kl", "uint16", "nats", "lower", [v],
                           compare_by=None, subject="agentloop")

    peer = make_figure("peer", "step latency", "p", PYMDP1, "us", "lower", [1.0], 10.0)
    assert peer["compare_by"] is None
    old = _report(agree(99.9), kl(1e-12), peer)
    worse_peer = make_figure("peer", "step latency", "p", PYMDP1, "us", "lower", [100.0], 10.0)
    assert compare(old, _report(agree(99.0), kl(1.0), worse_peer))["regressions"] == []
    flagged = compare(old, _report(agree(80.0), kl(1.0), worse_peer))["regressions"]
    assert [r["key"] for r in flagged] == ["q"]


def test_compare_only_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, good, bad = tmp_path / "old.json", tmp_path / "good.json", tmp_path / "bad.json"
    old.write_text(json.dumps(_report(_ratio_fig("a", 100.0))))
    good.write_text(json.dumps(_report(_ratio_fig("a", 95.0))))
    bad.write_text(json.dumps(_report(_ratio_fig("a", 80.0))))
    assert main(["--compare", str(old), "--against", str(good)]) == 0
    assert main(["--compare", str(old), "--against", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "WORSE" in out and "20.0%" in out
    assert main(["--compare", str(tmp_path / "nope.json"), "--against", str(good)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "nope.json" in err
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["--compare", str(tmp_path / "junk.json"), "--against", str(good)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------------------------------ markers
def test_marked_section_appended_when_absent_and_idempotent(tmp_path: Path) -> None:
    before = "# Results\n\nHand-written text.\n\n```\nnumbers\n```\n"
    once = update_marked_section(before, "generated v1")
    assert once.startswith(before)
    assert once.endswith(f"{MARK_START}\ngenerated v1\n{MARK_END}\n")
    assert update_marked_section(once, "generated v1") == once
    twice = update_marked_section(once, "generated v2\n\nmore")
    assert twice.startswith(before)
    assert "generated v1" not in twice and twice.count(MARK_START) == 1

    path = tmp_path / "RESULTS.md"
    path.write_text(before)
    write_results_md(path, "table")
    write_results_md(path, "table")
    assert path.read_text() == update_marked_section(before, "table")


def test_marked_section_in_the_middle_leaves_the_rest_untouched() -> None:
    head = "intro\n  keep   spacing \n"
    tail = "\n## After\ntrailing text without newline"
    text = f"{head}{MARK_START}\nold stuff\n{MARK_END}{tail}"
    new = update_marked_section(text, "fresh")
    assert new == f"{head}{MARK_START}\nfresh\n{MARK_END}{tail}"
    assert update_marked_section(new, "fresh") == new


# ------------------------------------------------------------------------------------ tiny run
TINY = BenchConfig(
    repeats=2, latency_models=("grid-5", "multi-3x3"), policy_lens=(1, 3),
    throughput_models=("grid-5",), sizes=(1, 10, 1000), workers=(0, 2),
    max_agents_long_policy=10, reference_max_agents=10, warmup_steps=1, timed_steps=2,
    max_timed_steps=3, held_hz=(10.0, 60.0), held_start=100, held_limit=1_000_000,
    startup_agents=1000, startup_repeats=2, quant_cases=("grid-10",), install_pymdp1=False,
    zoo_models=("dense-grid-10", "epistemic-chain"), zoo_agents=1000, zoo_agents_long=10,
)


class FakeProbes(Probes):
    """Deterministic stand-ins for every measurement: a fast engine, slower peers."""

    def __init__(self, cfg: BenchConfig, progress: Progress) -> None:
        super().__init__(cfg, progress)
        self.calls: list[str] = []

    def pymdp_reason(self) -> str:
        return ""

    def start_pymdp1(self) -> tuple[dict[str, Any] | None, str]:
        return {"pymdp": "1.0.4", "jax": "0.0", "device": "cpu:0"}, ""

    def cupy_reason(self) -> str:
        return "no GPU in the test"

    def machine(self, threads: int) -> dict[str, Any]:
        return {"matmul": {"gflops_max": 50.0 * threads},
                "bandwidth": {"gbps_max": 25.0 * threads}}

    def latency(self, model: str, policy_len: int, impl: str) -> list[float]:
        self.calls.append(f"latency {impl}")
        base = {"agentloop": 1e-5, REFERENCE: 5e-4, PYMDP: 6e-4, PYMDP1: 2e-4}[impl]
        return [base * policy_len] * 5

    def open_population(self, model: str, policy_len: int, n: int, impl: str) -> PopulationHandle:
        if impl == PYMDP1 and n > 10:
            raise MemoryError("too big for the test")
        per_agent = {REFERENCE: 5e-4, PYMDP1: 2e-4, PYMDP1_VMAP: 4e-6,
                     AGENTLOOP_MT1: 2e-6}.get(impl, 1e-6)
        extra = {"bytes_per_agent": 1000.0, "rss_bytes": 1e8 + 1000.0 * n, "create_s": 0.1,
                 "compile_s": 0.5} if impl in (PYMDP1, PYMDP1_VMAP) else {}
        return PopulationHandle(impl, n, lambda: per_agent * n + 1e-5, lambda: None, extra)

    def step_cost(self, model: str, policy_len: int) -> dict[str, Any] | None:
        return {"flops_total": 1000.0, "bytes_total": 300}

    def held(self, n: int, hz: float, policy_len: int) -> dict[str, Any]:
        ok = n * 1e-6 < 1.0 / hz
        return {"agents": n, "p50_ms": 1.0, "p99_ms": 2.0, "held": ok}

    def engine_memory(self) -> dict[str, Any]:
        return {"per_agent_bytes": 282.0, "shared_model_bytes": 1000}

    def rss(self, policy_len: int) -> dict[str, Any]:
        return {"n": 1000, "bytes_per_agent_after_step": 465.0}

    def pymdp_footprint(self, policy_len: int) -> dict[str, Any]:
        return {"bytes_per_agent": 500_000.0, "create_s_per_agent": 0.002}

    def startup(self) -> dict[str, Any]:
        return {"agents": 1000, "create_s": 0.1, "first_tick_s": 0.2}

    def quantization(self, case_name: str) -> list[dict[str, Any]]:
        row = {"model": case_name, "policy_len": 1, "agents": 10, "ticks": 10,
               "agreement": 0.999, "kl_mean": [1e-12]}
        return [{**row, "codec": "uint16", "control": False},
                {**row, "codec": "jitter", "control": True}]


def _tiny_run(cfg: BenchConfig = TINY) -> tuple[dict[str, Any], FakeProbes, str]:
    stream = io.StringIO()
    progress = Progress(count_units(cfg), stream=stream)
    probes = FakeProbes(cfg, progress)
    results = run(cfg, "python -m perf --test", probes, progress)
    return results, probes, stream.getvalue()


def test_tiny_run_results_schema(tmp_path: Path) -> None:
    results, probes, progress = _tiny_run()
    assert validate_results(results) == []
    results = json.loads(json.dumps(results))               # JSON-ready
    figures = {f["key"]: f for f in results["figures"]}
    lat = figures["latency/grid-5/L1/agentloop"]
    assert lat["median"] == pytest.approx(10.0) and lat["repeats"] == 2
    assert lat["pymdp"] == pytest.approx(600.0) and lat["ratio"] == pytest.approx(60.0)
    assert figures[f"latency/multi-3x3/L3/{PYMDP1}"]["ratio"] == pytest.approx(3.0)
    # alternation: every implementation once per repeat, in turn
    assert probes.calls[:8] == ["latency agentloop", f"latency {REFERENCE}", f"latency {PYMDP}",
                                f"latency {PYMDP1}"] * 2
    thr = figures["throughput/grid-5/L1/N=1000/engine-w2"]
    assert thr["better"] == "higher" and thr["ratio"] > 1 and thr["unit"] == "steps/s"
    assert "throughput/grid-5/L3/N=1000/engine-w2" not in figures       # capped at 10
    assert f"throughput/grid-5/L1/N=1000/{PYMDP1}" not in figures         # MemoryError: noted
    assert any("MemoryError" in nm["reason"] for nm in results["not_measured"])
    assert any(nm["what"] == "CuPy" for nm in results["not_measured"])
    held = figures["held/grid-10/L1/10Hz/engine-w2"]
    assert 87_500 <= held["median"] < 100_000
    assert figures["memory/grid-10/L1/engine-arrays"]["ratio"] == pytest.approx(500_000 / 282)
    assert figures["startup/grid-10/L1/N=1000/engine-w2"]["pymdp"] == pytest.approx(
        1000 * (0.002 + 6e-4))
    assert figures["quantization/grid-10/L1/uint16/agreement"]["compare_by"] == "value"
    assert "quantization/grid-10/L1/jitter/agreement" not in figures
    assert any(k.startswith("peak/grid-5/L1/flops/") for k in figures)
    assert [s["stage"] for s in results["raw"]["stages"]][0] == "peers"
    assert "[bench" in progress and progress.count("\n") > 10          # plain lines, no tty

    table = readme_table(results)
    assert table.startswith("| figure |") and "pymdp 0.0.7.1" in table
    assert "Not measured:" in table
    section = results_md_section(results, str(tmp_path / "r.json"))
    assert "### Every figure" in section and MARK_START not in section
    report = format_report(results)
    assert "not measured: no GPU in the test" in report
    assert compare(results, results)["regressions"] == []


def test_tiny_run_without_peers_has_no_ratios() -> None:
    class NoPeers(FakeProbes):
        def pymdp_reason(self) -> str:
            return "not installed in the test"

        def start_pymdp1(self) -> tuple[dict[str, Any] | None, str]:
            return None, "no venv in the test"

    cfg = BenchConfig(**{**TINY.__dict__, "latency_models": ("grid-5",), "policy_lens": (1,),
                         "held_hz": (10.0,)})
    stream = io.StringIO()
    progress = Progress(count_units(cfg), stream=stream)
    results = run(cfg, "t", NoPeers(cfg, progress), progress)
    assert validate_results(results) == []
    assert all(f["ratio"] is None for f in results["figures"])
    whats = {nm["what"]: nm["reason"] for nm in results["not_measured"]}
    assert "not installed" in whats["pymdp 0.0.7.1"] and whats["pymdp 1.x"] == "no venv in the test"


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results, _, _ = _tiny_run()
    paths = write_plots(results, tmp_path, "tiny")
    assert {Path(p).name for p in paths} == {"tiny-throughput.png", "tiny-latency.png",
                                             "tiny-held.png"}
    assert all(Path(p).stat().st_size > 1000 for p in paths)


# ------------------------------------------------------------------------------------ search
@pytest.mark.parametrize("capacity", [1, 150, 37_000, 99_999])
def test_largest_held_brackets_the_capacity(capacity: int) -> None:
    tried: list[int] = []

    def held(n: int) -> bool:
        tried.append(n)
        return n <= capacity

    best, limited = largest_held(held, 1000, 2, 1_000_000, 0.125)
    assert not limited
    assert best <= capacity and capacity - best <= max(1, best // 8)
    assert len(tried) < 25


def test_largest_held_stops_at_the_limit() -> None:
    assert largest_held(lambda n: True, 1000, 4, 50_000, 0.125) == (16_000, True)
    assert largest_held(lambda n: False, 1000, 2, 50_000, 0.125) == (0, False)


# ------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("argv", [["--sizes", "ten"], ["--repeats", "0"], ["--bogus"],
                                  ["--policy-lens", ""], ["--workers", "-1"]])
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m perf: error:")


@pytest.mark.parametrize("argv", [["--models", "grid-7"], ["--against", "x.json"],
                                  ["--sizes", "0"], ["--json", "/nonexistent-dir/x.json"]])
def test_bad_values_are_one_line_and_exit_2(argv: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m perf: error:")


def test_add_parsers_and_config() -> None:
    from tools.args import OneLineParser

    parser = OneLineParser(prog="agentloop")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_parsers(sub)
    args = parser.parse_args(["bench", "--quick", "--no-pymdp1", "--sizes", "10,1_000,10",
                              "--models", "grid-5,multi-3x3"])
    assert args.command == "bench"
    cfg = config_from_args(args)
    assert cfg.sizes == (10, 1000) and not cfg.pymdp1 and cfg.repeats == QUICK.repeats
    assert cfg.latency_models == ("grid-5", "multi-3x3")
    full = config_from_args(build_parser().parse_args([]))
    assert full == FULL and 1_000_000 in full.sizes
    assert isinstance(build_parser(), argparse.ArgumentParser)


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress(4, stream=tty)
    bar.step("latency")
    bar.message("pymdp 1.x: not measured: test")
    bar.close()
    text = tty.getvalue()
    assert "\r\x1b[K[" in text and "1/4" in text and text.endswith("\n")
    plain = io.StringIO()
    lines = Progress(4, stream=plain)
    lines.step("latency")
    lines.step("throughput", units=10)                   # clamped to the total
    assert plain.getvalue().splitlines()[-1].startswith("[bench   4/4 ")
    assert "\r" not in plain.getvalue()


def test_missing_pymdp1_venv_is_a_reason_not_an_error(tmp_path: Path) -> None:
    from perf.pymdp_jax import ensure_venv

    python, reason = ensure_venv(tmp_path / "venv", install=False)
    assert python is None and "no working pymdp 1.x venv" in reason


@pytest.mark.slow
def test_pymdp1_child_steps_a_batch() -> None:
    """The real pymdp 1.x child (skipped unless the pymdp 1.x venv works): a batch of 3 agents."""
    from perf.pymdp_jax import ensure_venv

    python, reason = ensure_venv(install=False)
    if python is None:
        pytest.skip(reason)
    peer = JaxPeer(python, timeout_s=300)
    try:
        assert int(peer.info["pymdp"].split(".")[0]) >= 1
        for model in ("grid-5", "multi-3x3"):
            info = peer.ask({"op": "setup", "model": peer.model_file(model), "policy_len": 1,
                             "n": 3, "seed": 0})
            assert info["bytes_per_agent"] > 0 and info["compile_s"] > 0
            times = peer.ask({"op": "time", "steps": 2})["times"]
            assert len(times) == 2 and all(t > 0 for t in times)
        with pytest.raises(RuntimeError, match="unknown op"):
            peer.ask({"op": "nonsense"})
    finally:
        peer.close()
    assert peer.proc.poll() is not None
