"""``agentloop run``: the main job end to end, its status line, exit codes and bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runtime.shm import leftover_entries
from tests.cli_process import live_run

REPO = Path(__file__).resolve().parents[2]


def _agentloop(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tools", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def _runs_of(pid: int) -> list[str]:
    return [run for run in leftover_entries() if run.startswith(f"{pid}x")]


def test_run_grid_in_process_prints_status_and_summary() -> None:
    done = _agentloop("run", "--agents", "500", "--ticks", "12", "--hz", "50")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    status = [line for line in lines if line.startswith("tick ")]
    assert status, done.stdout                 # not a terminal: plain lines, no \r
    assert "p99" in status[-1] and "agent-steps/s" in status[-1] and "RSS" in status[-1]
    assert "on resource" in status[-1]
    assert any(line.startswith("summary: 12 ticks at 50 Hz") for line in lines)
    assert "\r" not in done.stdout
    assert done.stderr == ""


def test_run_foraging_with_a_worker_process() -> None:
    done = _agentloop("run", "--world", "foraging", "--agents", "300", "--workers", "1",
                      "--duration", "0.3", "--hz", "20", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "1 worker process," in done.stdout
    assert "summary: 6 ticks at 20 Hz" in done.stdout
    assert "on food" in done.stdout


def test_status_line_summary_and_inspect_agree_on_misses_and_percentiles(
        tmp_path: Path) -> None:
    """One definition each: a missed tick is an engine step over the budget it was given,
    p50/p99 are of the engine step, stale agents are counted by reason, in the status line,
    the summary, --status-json and ``inspect``."""
    log, status_json = tmp_path / "run.mcap", tmp_path / "status.jsonl"
    done = _agentloop("run", "--agents", "4000", "--ticks", "40", "--hz", "200",
                      "--policy-len", "2", "--log", str(log), "--status-json",
                      str(status_json))
    assert done.returncode == 0, done.stderr
    status = [line for line in done.stdout.splitlines() if re.match(r"tick \d", line)][-1]
    summary = next(line for line in done.stdout.splitlines() if line.startswith("summary:"))
    missed_status = int(re.search(r"missed (\d+)", status).group(1))
    missed_summary = int(re.search(r"missed (\d+)", summary).group(1))
    p99_status = float(re.search(r"p50/p99 [\d.]+/([\d.]+) ms", status).group(1))
    p99_summary = float(re.search(r"p99 ([\d.]+) ms", summary).group(1))
    inspected = _agentloop("inspect", str(log), "--json")
    assert inspected.returncode == 0, inspected.stderr
    tick_time = json.loads(inspected.stdout)["tick_time"]
    assert missed_status == missed_summary == tick_time["over_budget"]
    assert missed_summary > 0                        # 200 Hz: some steps overran
    p99_inspect = 1e3 * tick_time["p99_s"]      # the same number, printed to .2f and .1f
    assert abs(p99_summary - p99_inspect) <= 0.005 + 1e-9
    assert abs(p99_status - p99_inspect) <= 0.05 + 1e-9
    assert len(status.split("  on ")[0]) <= 100
    # stale agents: the same counts by reason in --status-json, inspect and the summary
    from engine.runtime.stale import StaleCounts, describe

    last = json.loads(status_json.read_text().splitlines()[-1])
    stale = json.loads(inspected.stdout)["stale"]
    assert last["stale_agent_ticks"] == stale["by_reason"] and stale["unrecorded"] == 0
    assert sum(stale["by_reason"].values()) == stale["total"]
    by_reason = StaleCounts.from_dict(stale["by_reason"])
    assert f"; {describe(by_reason, 40 * 4000)} of agent-ticks; " in summary
    assert f" {describe(StaleCounts.from_dict(last['stale_reasons']), 4000, 'total')}" in status


def test_run_with_pymdp1_semantics_says_so_and_logs_it(tmp_path: Path) -> None:
    log = tmp_path / "run.mcap"
    done = _agentloop("run", "--world", "foraging", "--agents", "200", "--ticks", "5",
                      "--hz", "20", "--semantics", "pymdp1", "--log", str(log))
    assert done.returncode == 0, done.stderr
    assert "pymdp 1.x semantics" in done.stdout
    assert "per-modality outcome table" in done.stdout
    from engine.ticklog.reader import TickLogReader

    with TickLogReader(str(log)) as reader:
        assert reader.header.config["semantics"] == "pymdp1"
    assert _agentloop("replay", str(log)).returncode == 0


@pytest.mark.parametrize("kernel", ["auto", "fused"])
def test_run_on_the_array_backend(kernel: str) -> None:
    """--backend xp-numpy keeps the population on the array backend's device (NumPy here);
    --xp-kernel fused steps it with the fused kernel's host build."""
    done = _agentloop("run", "--agents", "40", "--backend", "xp-numpy", "--ticks", "3",
                      "--hz", "5", "--xp-kernel", kernel)
    assert done.returncode == 0, done.stderr
    assert "backend xp-numpy, no worker processes" in done.stdout
    assert "summary: 3 ticks at 5 Hz" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--world", "mars"], "unknown world 'mars'; choose from grid, foraging"),
    (["--agents", "-5"], "--agents: must be at least 1"),
    (["--agents", "many"], "--agents: expected a whole number"),
    (["--hz", "0"], "--hz: must be above 0"),
    (["--hz", "inf"], "--hz: must be a finite number"),
    (["--ticks", "0"], "--ticks: must be at least 1"),
    (["--ticks", "3", "--duration", "1"], "not allowed with argument"),
    (["--workers", "-2"], "--workers: must be at least 0"),
    (["--size", "1"], "--size must be at least 2"),
    (["--backend", "tpu"], "--backend: invalid choice"),
    (["--backend", "xp-numpy", "--cluster", "local"], "cluster shards run the numba backend"),
    (["--xp-kernel", "fused"], "--xp-kernel fused: needs --backend cupy, xp-numpy or auto"),
    (["--backend", "xp-numpy", "--xp-kernel", "warp"], "--xp-kernel: invalid choice"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--overwrite"], "--overwrite needs --log"),
    (["--visual"], "--visual needs --log"),
    (["--visual-every", "2"], "--visual-every needs --visual"),
    (["--visual-every", "0"], "--visual-every: must be at least 1"),
])
def test_bad_command_lines_get_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = _agentloop("run", *args, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


def test_help_explains_every_option() -> None:
    done = _agentloop("run", "--help", timeout=60)
    assert done.returncode == 0
    for option in ("--world", "--size", "--agents", "--hz", "--ticks", "--duration",
                   "--workers", "--backend", "--xp-kernel", "--policy-len", "--seed"):
        assert option in done.stdout
    assert "exit codes" in done.stdout


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_tick_prints_the_summary_and_cleans_up(signum: int,
                                                                   code: int) -> None:
    with live_run("--agents", "30000", "--workers", "2", "--ticks", "100000", "--hz", "20",
                  stderr=subprocess.PIPE) as proc:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "(interrupted)" in out and "summary:" in out
    assert "Traceback" not in err
    assert _runs_of(proc.pid) == []


def test_an_existing_log_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    path.write_bytes(b"an earlier log")
    done = _agentloop("run", "--agents", "50", "--ticks", "3", "--hz", "50", "--log", str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"agentloop run: error: --log {path}: already exists; "
                                   f"pass --overwrite to replace it")
    assert path.read_bytes() == b"an earlier log"
    done = _agentloop("run", "--agents", "50", "--ticks", "3", "--hz", "50", "--log", str(path),
                      "--overwrite")
    assert done.returncode == 0, done.stderr
    assert f"replay with: agentloop replay {path}" in done.stdout
    assert _agentloop("replay", str(path), timeout=120).returncode == 0


def test_visual_logs_the_foraging_world_as_a_foxglove_grid(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    path = tmp_path / "visual.mcap"
    done = _agentloop("run", "--world", "foraging", "--agents", "40", "--ticks", "5", "--hz",
                      "50", "--log", str(path), "--visual", "--visual-every", "2")
    assert done.returncode == 0, done.stderr
    with open(path, "rb") as f:
        reader = make_reader(f)
        grids = [(schema.name, schema.encoding, channel.message_encoding)
                 for schema, channel, _ in reader.iter_messages(topics=["/world/grid"])]
    assert grids == [("foxglove.Grid", "jsonschema", "json")] * 3      # ticks 0, 2, 4


def test_a_log_being_written_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    from engine.ticklog.reader import TickLogReader
    from engine.ticklog.schema import TickLogHeader
    from engine.ticklog.writer import TickLogWriter

    path = tmp_path / "busy.mcap"
    writer = TickLogWriter(path, TickLogHeader(n_agents=2))
    writer.write_tick(0, [[0], [1]], [[0], [1]])
    done = _agentloop("run", "--agents", "50", "--ticks", "3", "--hz", "50", "--log", str(path),
                      "--overwrite")
    writer.close()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"agentloop run: error: --log {path}: in use by another writer"
    with TickLogReader(path) as reader:
        assert [t.tick for t in reader.ticks()] == [0] and reader.footer is not None


def test_a_log_removed_during_the_run_is_not_reported_as_written(tmp_path: Path) -> None:
    path = tmp_path / "doomed.mcap"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "tools", "run", "--agents", "50", "--ticks",
                             "60", "--hz", "20", "--log", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.01)
        path.unlink()
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "replay with" not in out
    assert err.strip() == (f"agentloop run: error: tick log {path} was removed or replaced "
                           f"during the run")


def test_run_with_learning_shows_it_and_replays(tmp_path: Path) -> None:
    """--learn A: priors like the world's A, the parameter bytes in the banner, the learnt
    counts' drift on the status line, and a log that replays (snapshots carry the counts)."""
    log = tmp_path / "learn.mcap"
    done = _agentloop("run", "--world", "foraging", "--size", "3", "--agents", "60",
                      "--ticks", "8", "--hz", "20", "--learn", "A", "--log", str(log),
                      "--snapshot-every", "3")
    assert done.returncode == 0, done.stderr
    assert re.search(r"learning A: [\d,]+ bytes of parameters per agent", done.stdout)
    assert "KL(pA) " in done.stdout
    replayed = _agentloop("replay", str(log), "--from", "5")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    refused = _agentloop("run", "--agents", "10", "--ticks", "1", "--learn", "B",
                         "--backend", "xp-numpy")
    assert refused.returncode == 2 and "--learn" in refused.stderr


def test_status_json_writes_one_object_a_second(tmp_path: Path) -> None:
    path = tmp_path / "status.jsonl"
    done = _agentloop("run", "--agents", "50", "--size", "5", "--ticks", "50", "--hz", "20",
                      "--status-json", str(path))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert 2 <= len(records) <= 5, records                  # 2.5 s of run, and the last tick
    assert records[-1]["tick"] == 50 and records[-1]["ticks"] == 50
    for key in ("tick_ms_p50", "tick_ms_p99", "missed", "level", "stale_agents",
                "agents_per_s", "rss_mb", "time", "world"):
        assert key in records[-1], key
    assert [r["tick"] for r in records] == sorted({r["tick"] for r in records})
    bad = _agentloop("run", "--agents", "5", "--ticks", "1", "--status-json",
                     str(tmp_path / "missing" / "s.jsonl"))
    assert bad.returncode == 2 and "--status-json" in bad.stderr
