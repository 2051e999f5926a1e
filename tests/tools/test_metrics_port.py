"""``agentloop run --metrics-port``: the Prometheus endpoint of a live run, its bad values, and
its port closed after the run."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NAMES = ("agentloop_tick_seconds", "agentloop_ticks", "agentloop_missed_ticks",
         "agentloop_late_slots", "agentloop_dropped_slots", "agentloop_level",
         "agentloop_stale_agents", "agentloop_agent_steps", "agentloop_agents",
         "agentloop_rss_bytes", "agentloop_worker_respawns")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))


def _agentloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools", *args], capture_output=True,
                          text=True, timeout=120, env=_env(), cwd=REPO)


def _summary_number(summary: str, what: str) -> int:
    match = re.search(rf"{what} (\d+)", summary)
    assert match, summary
    return int(match.group(1))


def test_a_live_run_serves_its_metrics_and_closes_the_port() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tools", "run", "--agents", "40", "--size",
                             "5", "--ticks", "40", "--hz", "25", "--metrics-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=REPO)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("metrics: "):
                url = line.split()[1]
            if line.startswith("tick "):                 # running: scrape now
                break
        assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url), url
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(NAMES) <= set(families), sorted(families)
    assert all(families[name].documentation for name in NAMES)
    value = {s.name: s.value for f in families.values() for s in f.samples if not s.labels}
    summary = next(line for line in out.splitlines() if line.startswith("summary: "))
    assert 1 <= value["agentloop_ticks_total"] <= 40
    assert value["agentloop_tick_seconds_count"] == value["agentloop_ticks_total"]
    assert value["agentloop_missed_ticks_total"] <= _summary_number(summary, "missed")
    assert value["agentloop_agents"] == 40
    assert [s.labels for s in families["agentloop_rss_bytes"].samples] == [
        {"process": "master"}]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port),
                                                                         timeout=5):
        pass


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics-port", "-1"], "--metrics-port: must be at least 0"),
    (["--metrics-port", "65536"], "--metrics-port: must be at most 65535"),
    (["--metrics-port", "http"], "--metrics-port: expected a whole number"),
    (["--metrics-host", "0.0.0.0"], "--metrics-host needs --metrics-port"),
    (["--metrics-port", "0", "--metrics-host", " "], "--metrics-host: expected an address"),
])
def test_bad_metrics_options_get_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = _agentloop("run", "--agents", "5", "--ticks", "1", *args)
    assert done.returncode == 2 and done.stdout == ""
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_a_busy_port_is_one_line_and_exit_2_before_the_run_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _agentloop("run", "--agents", "5", "--ticks", "1", "--metrics-port", str(port))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1" in err, err
    assert "Traceback" not in err
