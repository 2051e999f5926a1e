"""``agentloop run`` with values the machine cannot hold: refused in one line with exit 2 before
anything is built (never a traceback, never the OOM killer), or run with a warning when they
can only work badly; the banner's memory estimate."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import cli
from tools.commands import run as run_command
from tools.run import RunOptions, footprint_of, run_warnings

REPO = Path(__file__).resolve().parents[2]
MEASURE = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
           "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
"""Runs ``sys.argv[1:]`` and prints its exit code and peak RSS (KiB): the only child it waits
for, so ``RUSAGE_CHILDREN`` is that process's alone."""


def _agentloop(*args: str, timeout: float = 60) -> tuple[int, str, float]:
    """Exit code, stderr and peak RSS (MB) of ``agentloop *args`` in a fresh grandchild."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "tools", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    code, kib = done.stdout.split()[-2:]
    return int(code), done.stderr, int(kib) / 1024


@pytest.mark.parametrize(("args", "message"), [
    (["--policy-len", "50"], "--policy-len 50: policy_len 50 gives about 10^35 policies"),
    (["--policy-len", "12"], "--policy-len 12: policy_len 12 gives 244,140,625 policies"),
    (["--agents", "2000000000"], "2,000,000,000 agents in the grid world of size 10 need ~"),
    (["--size", "1000"], "--size 1000: model too large for the state information gain"),
    (["--hz", "100000"], "--hz 100000: at most 10000 ticks per second (a 0.1 ms budget)"),
    (["--seed", str(2**70)], "--seed: must be at most 2**63 - 1"),
    (["--seed", "-1"], "--seed: must be at least 0, got -1"),
    (["--duration", "1e300"], "--duration 1e+300 at --hz 10 gives 1e+301 ticks: at most"),
])
def test_oversized_requests_exit_2_in_one_line(args: list[str], message: str) -> None:
    code, err, rss = _agentloop("run", *args)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert message in err, err
    assert rss < 300, f"{args}: {rss:.0f} MB before refusing"


@pytest.mark.parametrize(("args", "message"), [
    (["demo", "--size", "1000"], "--size 1000: model too large"),
    (["demo", "--agents", "2000000000"], "2,000,000,000 agents in the grid world of size 10 "
                                         "need ~"),
    (["demo", "--seed", str(2**64)], "--seed: must be at most 2**63 - 1"),
    (["soak", "--policy-len", "12"], "--policy-len 12: policy_len 12 gives 244,140,625"),
    (["soak", "--agents", "2000000000"], "2,000,000,000 agents in the grid world"),
    (["soak", "--seed", str(2**70)], "--seed: must be at most 2**63 - 1"),
])
def test_demo_and_soak_refuse_the_same_in_one_line(args: list[str], message: str) -> None:
    code, err, rss = _agentloop(*args)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert message in err, err
    assert rss < 300


def test_memory_refusal_names_both_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "--agents", "2000000000"])
    err = capsys.readouterr().err
    assert code == 2
    needed, rest = err.split("need ~", 1)[1].split(" MB", 1)
    assert int(needed.replace(",", "")) > 500_000, err          # 282 bytes an agent
    assert re.search(r"the [\d,]+ MB (available|free there)", rest), err


def _options(**changes: object) -> RunOptions:
    values: dict[str, object] = dict(world="grid", size=None, agents=100, hz=10.0, ticks=5,
                                     duration=None, workers=None, backend="numba",
                                     policy_len=1, seed=0)
    values.update(changes)
    return RunOptions(**values)  # type: ignore[arg-type]


def test_warnings_for_settings_that_cannot_work_well() -> None:
    assert run_warnings(_options(), cores=2) == []
    [workers] = run_warnings(_options(workers=64), cores=2)
    assert workers.startswith("--workers 64 on 2 cores: more worker processes than cores")
    [budget] = run_warnings(_options(hz=9000.0, workers=2), cores=2)
    assert "--hz 9000 leaves 0.111 ms a tick, less than the engine's own overhead" in budget
    assert run_warnings(_options(hz=9000.0, workers=0), cores=2) == []   # 15 us in process


def test_workers_beyond_cores_warn_and_run(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[RunOptions] = []
    monkeypatch.setattr("tools.run.run", lambda options: ran.append(options) or 0)
    monkeypatch.setattr(run_command, "_cores", lambda: 2)
    assert cli.main(["run", "--workers", "3", "--agents", "100", "--ticks", "1"]) == 0
    err = capsys.readouterr().err
    assert err == ("agentloop run: warning: --workers 3 on 2 cores: more worker processes "
                   "than cores slows every tick down\n")
    assert ran and ran[0].workers == 3


def test_footprint_counts_world_ticks_and_log() -> None:
    base = footprint_of(_options(agents=1_000_000))
    longer = footprint_of(_options(agents=1_000_000, ticks=1_000_000))
    logged = footprint_of(_options(agents=1_000_000, log="x.mcap"))
    assert longer.ram_bytes - base.ram_bytes == 16 * (1_000_000 - 5)
    assert logged.ram_bytes - base.ram_bytes == 32 * 1_000_000 * (2 + 1 + 1) * 8
    assert 250e6 < base.shm_bytes < 320e6                # 282 bytes an agent (grid-10)
    assert base.line().startswith("memory: ~") and base.line().endswith(" MB shm")


def test_banner_shows_the_memory_estimate() -> None:
    out = io.StringIO()
    from tools.run import run  # noqa: PLC0415
    assert run(_options(agents=50, ticks=2, hz=50.0), out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("agentloop run: 50 agents")
    assert lines[1].startswith("memory: ~") and lines[1].endswith(" MB shm"), lines[1]


def test_a_world_too_large_to_log_is_refused_before_the_run(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    """A tick log's header carries the model; one a reader would refuse is never written."""
    log = tmp_path / "big.mcap"
    assert cli.main(["run", "--size", "40", "--log", str(log)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agentloop run: error: --log {log}: the grid world of size 40 has a "
                          f"model of ~")
    assert "more than a tick log carries (64.0 MB)" in err and not log.exists()
