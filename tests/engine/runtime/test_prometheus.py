"""The Prometheus endpoint: its metrics are the engine's own figures (the run summary's and the
status line's), and its port is closed with it."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from engine import Engine  # noqa: E402
from engine.runtime.prometheus import MetricsEndpoint  # noqa: E402
from engine.runtime.tick import TickInfo  # noqa: E402
from world.registry import make_world  # noqa: E402

HZ = 50.0


class _SlowWorld:
    """A world whose step at ``slow_tick`` takes six tick periods: late and dropped slots,
    and a missed tick after them (the loop's estimate of the world's step then leaves the
    engine no budget)."""

    def __init__(self, world, slow_tick: int) -> None:  # noqa: ANN001
        self.world, self.slow_tick, self.steps = world, slow_tick, 0

    def reset(self, seed: int) -> np.ndarray:
        return self.world.reset(seed)

    def step(self, actions: np.ndarray) -> np.ndarray:
        self.steps += 1
        if self.steps == self.slow_tick:
            time.sleep(6.0 / HZ)
        return self.world.step(actions)


def _scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def _value(samples: dict, name: str) -> float:
    return samples[name][()]


def _port_is_free(port: int) -> bool:
    """Whether a server can listen on ``port`` (as servers do, past the TIME_WAIT of the
    connections it closed)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


def test_the_endpoint_serves_the_figures_of_the_summary_and_the_status_line() -> None:
    world = make_world("grid", 5, 40)
    with Engine(world.model(), 40, workers=0) as engine:
        engine.warm_up(world.reset(engine.seed))
        with MetricsEndpoint(port=0, hz=HZ) as endpoint:
            before = _scrape(endpoint.url)
            assert "agentloop_ticks_total" not in before       # no engine attached yet
            endpoint.attach(engine)
            stale: list[int] = []

            def on_tick(info: TickInfo) -> None:
                endpoint.observe(info)
                stale.append(info.stale_agents)

            summary = engine.run(_SlowWorld(world, 4), HZ, 12, on_tick=on_tick)
            samples = _scrape(endpoint.url)
            snap = engine.metrics.snapshot()
            port = endpoint.port
            assert endpoint.url == f"http://127.0.0.1:{port}/metrics"
    assert summary.dropped_slots >= 1 and summary.missed >= 1        # the slow world's doing
    assert _value(samples, "agentloop_ticks_total") == summary.ticks == 12
    assert _value(samples, "agentloop_tick_seconds_count") == summary.ticks
    assert _value(samples, "agentloop_missed_ticks_total") == summary.missed == snap.missed
    assert _value(samples, "agentloop_late_slots_total") == summary.late_slots
    assert _value(samples, "agentloop_dropped_slots_total") == summary.dropped_slots
    assert _value(samples, "agentloop_level") == snap.level
    # the stale gauge is by reason (issue 18): its sum is the last tick's stale agents
    stale_gauge = samples["agentloop_stale_agents"]
    assert sum(stale_gauge.values()) == snap.stale_agents
    assert {dict(k)["reason"]: v for k, v in stale_gauge.items()} == snap.stale_reasons
    stale_ticks = samples["agentloop_stale_agent_ticks_total"]
    assert {dict(k)["reason"]: v for k, v in stale_ticks.items()} == \
        summary.stale_agent_ticks.as_dict() == snap.stale_agent_ticks
    assert sum(stale_ticks.values()) == sum(stale)
    assert _value(samples, "agentloop_agents") == 40
    assert _value(samples, "agentloop_worker_respawns_total") == 0
    # the agents each tick updated (the sum behind the status line's agent-steps/s)
    assert _value(samples, "agentloop_agent_steps_total") == 12 * 40 - sum(stale)
    buckets = samples["agentloop_tick_seconds_bucket"]
    assert buckets[(("le", "+Inf"),)] == 12
    assert buckets[(("le", "0.02"),)] <= 12                          # 1/HZ is a bucket bound
    rss = samples["agentloop_rss_bytes"]
    assert list(rss) == [(("process", "master"),)]
    assert rss[(("process", "master"),)] == pytest.approx(snap.rss_mb * 2**20, rel=0.2)
    assert _port_is_free(port)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_worker_processes_each_have_an_rss_and_respawns_are_counted() -> None:
    world = make_world("grid", 5, 60)
    with Engine(world.model(), 60, workers=2) as engine, \
            MetricsEndpoint(engine, port=0) as endpoint:
        obs = world.reset(engine.seed)
        engine.step(obs, budget_s=1.0)
        os.kill(engine.worker_pids[1], signal.SIGKILL)
        updated = 60
        for _ in range(3):
            engine.step(obs, budget_s=0.2)
            updated += 60 - engine.last_tick.stale_agents
        samples = _scrape(endpoint.url)
        respawns = engine.respawns
    assert respawns == 1
    assert _value(samples, "agentloop_worker_respawns_total") == 1
    assert set(samples["agentloop_rss_bytes"]) == {(("process", p),) for p in
                                                   ("master", "worker-0", "worker-1")}
    assert all(v > 0 for v in samples["agentloop_rss_bytes"].values())
    assert _value(samples, "agentloop_ticks_total") == 4
    assert _value(samples, "agentloop_agent_steps_total") == updated


def test_a_busy_port_is_an_oserror_and_leaves_nothing_behind() -> None:
    threads = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            MetricsEndpoint(port=port)
    with MetricsEndpoint(port=0) as endpoint:
        assert set(threading.enumerate()) > threads         # the server's thread
        endpoint.close()                                    # twice is fine
    assert set(threading.enumerate()) == threads
