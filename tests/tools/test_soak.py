"""``agentloop soak``: a 30-second soak that must pass, the verdict on synthetic samples, and
the command line's bad arguments (one line, exit code 2)."""

from __future__ import annotations

import argparse
import re

import orjson
import pytest

from tools.args import OneLineParser
from tools.soak.checks import evaluate, judge_quality
from tools.soak.command import EXIT_PASSED, EXIT_USAGE, main_soak, options_from_args, register
from tools.soak.options import SoakOptions
from tools.soak.samples import Closing, Sample, SoakReport

#: the soak test's length in seconds (the acceptance run is an hour: agentloop soak)
SOAK_DURATION_S = 30.0
SOAK_AGENTS = 20_000
SOAK_HZ = 10.0
SOAK_SAMPLE_EVERY_S = 5.0
SOAK_WARMUP_S = 10.0
MB = 2**20


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="agentloop")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    register(sub)
    return parser


def _args(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(["soak", *argv])


# ------------------------------------------------------------------------------ the soak
@pytest.mark.alone
def test_short_soak_passes(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    report_path = tmp_path / "soak.json"
    args = _args("--duration", f"{SOAK_DURATION_S:g}", "--agents", str(SOAK_AGENTS),
                 "--workers", "2", "--hz", f"{SOAK_HZ:g}",
                 "--sample-every", f"{SOAK_SAMPLE_EVERY_S:g}", "--warmup", f"{SOAK_WARMUP_S:g}",
                 # quality on a shared 2-core test machine is not this test's subject (leaks
                 # and growth are); the quality bounds' own test is judge_quality's below
                 "--max-stale", "60", "--max-missed", "20",
                 "--report", str(report_path))
    code = main_soak(args)
    out, err = capsys.readouterr()
    report = orjson.loads(report_path.read_bytes())
    s = report["summary"]
    status = [line for line in out.splitlines()
              if re.match(rf"soak +[\d.]+/{SOAK_DURATION_S:g} s  tick ", line)]
    with capsys.disabled():                       # the run's lines, for the record (pytest -s)
        print("\n" + out)
    assert code == EXIT_PASSED, (out, err)
    assert report["passed"] and report["failures"] == []
    assert "soak passed" in out and err == ""

    n_ticks = round(SOAK_DURATION_S * SOAK_HZ)
    samples = report["samples"]
    assert s["ticks"] == n_ticks
    assert len(samples) == 1 + n_ticks // round(SOAK_SAMPLE_EVERY_S * SOAK_HZ)
    assert len(status) == len(samples)
    assert SOAK_DURATION_S <= s["elapsed_s"] < SOAK_DURATION_S + 5
    assert s["missed"] <= 0.05 * n_ticks           # first tick, and a busy 2-core machine

    # memory: measured after the warm-up, within the bound
    assert s["growth_checked"]
    assert SOAK_WARMUP_S <= s["warmup_end_s"] < SOAK_WARMUP_S + SOAK_SAMPLE_EVERY_S
    assert abs(s["rss_growth_pct"]) < 1.0
    assert s["rss_end"] > 100 * MB                 # master and two workers really measured
    assert all(len(x["rss_workers"]) == 2 and min(x["rss_workers"]) > 0 for x in samples)

    # file descriptors: constant after the warm-up, back to the start after close
    after = [x for x in samples if x["elapsed_s"] >= s["warmup_end_s"]]
    assert {x["fds_total"] for x in after} == {s["fds_warmup_end"]}
    assert s["fds_master_after"] <= s["fds_master_before"]

    # /dev/shm: constant while running, nothing left, no worker alive
    assert s["shm_entries"] > 0 and s["shm_bytes"] > 0
    assert {(x["shm_entries"], x["shm_bytes"]) for x in samples} == {(s["shm_entries"],
                                                                      s["shm_bytes"])}
    assert s["shm_left_after_close"] == [] and s["workers_alive_after_close"] == []

    # timing: p99 per minute, levels, respawns
    assert len(s["tick_ms_p99_per_minute"]) == 1
    assert 0 < s["tick_ms_p50"] <= s["tick_ms_p99"] < 1e3 / SOAK_HZ * 5
    assert sum(s["level_counts"]) == n_ticks
    assert s["respawns"] == 0

    # stale agent-ticks: the per-tick counts and the reasons' totals are one figure
    assert sum(s["stale_by_reason"].values()) == s["stale_agent_ticks"]
    assert s["stale_by_reason"]["worker"] == 0 and s["stale_by_reason"]["forced"] == 0


# ------------------------------------------------------------------------------ verdict
def _sample(t: float, rss_mb: float = 300.0, fds: int = 100,
            shm: tuple[int, int] = (40, 5_000_000)) -> Sample:
    """A synthetic sample: master + two workers, ``rss_mb`` and ``fds`` in total."""
    rss = int(rss_mb * MB)
    return Sample(elapsed_s=t, ticks=int(10 * t), rss_master=rss - 2 * (rss // 3),
                  rss_workers=(rss // 3, rss // 3), fds_master=fds - 40, fds_workers=(20, 20),
                  shm_entries=shm[0], shm_bytes=shm[1], shm_free=10**9)


def _run(*samples: Sample) -> list[Sample]:
    return [_sample(0.0), *samples]


CLEAN = Closing(shm_left=(), workers_alive=(), fds_master_before=7, fds_master_after=7)


def test_quality_fails_on_stale_agent_ticks_or_missed_ticks() -> None:
    options = SoakOptions(agents=1000, max_stale_pct=10.0, max_missed_pct=2.0)
    assert judge_quality(100, 2, 10_000, options)[0] == []         # 10% stale, 2% missed
    failures, figures = judge_quality(100, 3, 10_001, options)
    assert figures["stale_pct"] == pytest.approx(10.001)
    assert failures == [
        "10.0% of agent-ticks were stale (bound 10%): 10,001 of 100,000 agent updates did "
        "not happen",
        "3.0% of ticks missed their budget (bound 2%): 3 of 100"]


def test_verdict_passes_a_flat_run() -> None:
    samples = _run(*(_sample(t) for t in (10, 20, 30, 40)))
    failures, figures = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0,
                                 closing=CLEAN)
    assert failures == []
    assert figures["growth_checked"] and figures["warmup_end_s"] == 20
    assert figures["rss_growth_pct"] == 0.0


def test_verdict_rss_growth_over_the_bound_fails_naming_rss() -> None:
    samples = _run(_sample(10, 250.0), _sample(20, 300.0), _sample(30, 302.0),
                   _sample(40, 306.0))
    failures, figures = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0,
                                 closing=CLEAN)
    assert len(failures) == 1
    assert failures[0].startswith("RSS grew 2.00% after the warm-up (bound 1%)")
    assert "300.0 MB" in failures[0] and "306.0 MB" in failures[0]
    assert figures["rss_growth_pct"] == pytest.approx(2.0)


def test_verdict_growth_during_the_warm_up_and_within_the_bound_passes() -> None:
    samples = _run(_sample(10, 100.0), _sample(20, 300.0), _sample(30, 302.9))
    failures, _ = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0, closing=CLEAN)
    assert failures == []


def test_verdict_fd_growth_fails() -> None:
    samples = _run(_sample(10, fds=90), _sample(20, fds=100), _sample(30, fds=101))
    failures, _ = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0, closing=CLEAN)
    assert len(failures) == 1
    assert "open file descriptors grew after the warm-up (bound: no growth)" in failures[0]
    assert "100 at 20 s, 101 at 30 s" in failures[0]


def test_verdict_shm_change_while_running_fails() -> None:
    samples = _run(_sample(10), _sample(20, shm=(41, 5_000_100)), _sample(30))
    failures, _ = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0, closing=CLEAN)
    assert len(failures) == 1
    assert "/dev/shm changed while running (bound: constant)" in failures[0]
    assert "41 entries" in failures[0]


def test_verdict_leftovers_after_close_fail() -> None:
    samples = _run(_sample(10), _sample(20), _sample(30))
    closing = Closing(shm_left=("agentloop-1x00-control", "sem.agentloop-1x00-go-0"),
                      workers_alive=(4242,), fds_master_before=7, fds_master_after=9)
    failures, figures = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0,
                                 closing=closing, run_id="1x00")
    assert len(failures) == 3
    assert failures[0].startswith("2 /dev/shm entries of run 1x00 left after the engine "
                                  "closed (bound: none): agentloop-1x00-control")
    assert "pids 4242" in failures[1]
    assert "9 open file descriptors" in failures[2] and "back to 7" in failures[2]
    assert figures["shm_left_after_close"] == list(closing.shm_left)


def test_verdict_without_a_sample_after_the_warm_up_judges_no_growth() -> None:
    samples = _run(_sample(10, 100.0), _sample(20, 300.0))     # interrupted at 20 s
    failures, figures = evaluate(samples, warmup_s=15.0, max_rss_growth_pct=1.0)
    assert failures == [] and not figures["growth_checked"]


def test_report_to_json() -> None:
    samples = _run(_sample(10))
    report = SoakReport(options={"agents": 5}, run_id="1x00", samples=samples, passed=False,
                        failures=["RSS grew"], summary={"level_counts": [3, 0]})
    data = orjson.loads(report.to_json())
    assert data["passed"] is False and data["failures"] == ["RSS grew"]
    assert data["samples"][1]["rss_total"] == samples[1].rss_total
    assert data["samples"][1]["fds_total"] == 100


# ------------------------------------------------------------------------------ options
def test_defaults_and_warm_up() -> None:
    args = _args()
    options = options_from_args(args)
    assert (options.duration_s, options.agents, options.hz, options.world, options.workers,
            options.policy_len, options.sample_every_s, options.max_rss_growth_pct) == (
        3600.0, 100_000, 10.0, "grid", 2, 1, 10.0, 1.0)
    assert options.warmup == 360.0 and options.n_ticks == 36_000
    assert SoakOptions(duration_s=60, sample_every_s=10).warmup == 10.0   # one sample at least
    assert options.problem() is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--duration", "0"], "argument --duration: must be above 0"),
    (["--agents", "many"], "argument --agents: expected a whole number"),
    (["--hz", "inf"], "argument --hz: must be a finite number"),
    (["--workers", "-1"], "argument --workers: must be at least 0"),
    (["--max-rss-growth", "-1"], "argument --max-rss-growth: must be at least 0"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _args(*argv)
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(("argv", "message"), [
    (["--world", "mars"], "unknown world 'mars'; choose from grid, foraging"),
    (["--size", "1"], "--size must be at least 2"),
    (["--duration", "30", "--warmup", "30"], "--duration 30 leaves no sample after the warm-up"),
    (["--duration", "10"], "the first sample after a 10 s warm-up is at 10 s"),
    (["--report", "/nonexistent-dir/r.json"], "--report /nonexistent-dir/r.json: the directory"),
    (["--log", "/"], "--log /: is a directory"),
    (["--max-stale", "150"], "--max-stale must be a percentage from 0 to 100, got 150"),
])
def test_bad_combinations_exit_2_before_starting(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main_soak(_args(*argv)) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err


def test_an_existing_log_is_refused_unless_overwrite(tmp_path,  # noqa: ANN001
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "old.mcap"
    log.write_bytes(b"keep me")
    assert main_soak(_args("--log", str(log))) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --overwrite" in err, err
    assert log.read_bytes() == b"keep me"
    assert main_soak(_args("--overwrite")) == EXIT_USAGE
    assert "--overwrite needs --log" in capsys.readouterr().err
    assert options_from_args(_args("--log", str(log), "--overwrite")).overwrite_log


def test_help_names_the_checks_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--help")
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("RSS", "open file descriptors", "/dev/shm", "warm-up", "--max-rss-growth",
                   "p99 tick time per minute", "exit codes: 0", "2 bad command line",
                   "130 interrupted"):
        assert phrase in text, phrase
