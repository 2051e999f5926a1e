"""Prometheus metrics of a running engine over HTTP (``agentloop run --metrics-port``).

Every figure is read from the engine's :class:`~engine.runtime.metrics.TickMetrics` when
scraped (the same numbers as the status line and ``--status-json``); the only per-tick work is
one histogram observation of the engine step (:meth:`MetricsEndpoint.observe`). Served from a
daemon thread by ``prometheus_client``; docs/observability.md lists the metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.runtime.engine_base import EngineBase
from engine.runtime.metrics import TickMetrics
from engine.runtime.tick import TickInfo

#: the tick-time histogram's bucket bounds, in tick periods (1/hz)
BUDGET_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 4.0)
#: the bounds, in seconds, without a tick rate
DEFAULT_BUCKETS = (1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class _EngineCollector(Collector):
    """The engine's totals and gauges, read at each scrape (none before :meth:`attach`)."""

    def __init__(self) -> None:
        self._metrics: TickMetrics | None = None
        self._engine: EngineBase | None = None
        self._respawns = 0

    def attach(self, engine: EngineBase) -> None:
        # the TickMetrics object itself: the engine drops its attribute when it closes
        self._metrics, self._engine = engine.metrics, engine

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        if m is None:
            return
        yield _counter("ticks", "ticks the engine stepped", m.ticks)
        yield _counter("missed_ticks", "ticks whose engine step took longer than its budget "
                       "(the status line's 'missed')", m.missed)
        yield _counter("late_slots", "tick slots that ended after their due time (engine "
                       "plus world)", m.late_slots)
        yield _counter("dropped_slots", "whole tick periods skipped to catch up after a late "
                       "slot", m.dropped_slots)
        yield _counter("agent_steps", "agents updated, summed over ticks (stale agents are "
                       "not counted)", m.agent_steps)
        yield _gauge("level", "degradation level of the last tick (0: full inference)",
                     m.level)
        stale = GaugeMetricFamily("agentloop_stale_agents", "agents the last tick did not "
                                  "update (they kept their previous action), by reason",
                                  labels=["reason"])
        ticks = CounterMetricFamily("agentloop_stale_agent_ticks", "stale agents summed over "
                                    "ticks, by reason", labels=["reason"])
        for reason, count in m.stale_reasons.as_dict().items():
            stale.add_metric([reason], float(count))
        for reason, count in m.stale_agent_ticks.as_dict().items():
            ticks.add_metric([reason], float(count))
        yield stale
        yield ticks
        yield _gauge("agents", "agents in the engine", m.n_agents)
        # a closed engine reports 0 respawns: keep the highest count seen
        self._respawns = max(self._respawns, int(getattr(self._engine, "respawns", 0)))
        yield _counter("worker_respawns", "worker processes replaced (dead or hung) since the "
                       "engine started", self._respawns)
        rss = GaugeMetricFamily("agentloop_rss_bytes", "resident set size of the master and "
                                "of each worker process", labels=["process"])
        for i, size in enumerate(m.process_rss()):
            rss.add_metric(["master" if i == 0 else f"worker-{i - 1}"], float(size))
        yield rss


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"agentloop_{name}", documentation, value=float(value))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"agentloop_{name}", documentation, value=float(value))


class MetricsEndpoint:
    """Serves an engine's metrics at ``http://host:port/metrics`` from a daemon thread until
    :meth:`close` (a context manager too). It listens at once, so that a busy port or an
    unknown host (``OSError`` here) is found before an engine starts; ``port`` 0 picks a free
    port (:attr:`port` says which). The engine's figures appear from :meth:`attach` on (a
    started engine; ``engine`` here attaches it at once). ``hz`` sets the tick-time histogram's
    buckets relative to the tick period. Call :meth:`observe` once per tick (it is an
    ``on_tick`` for :meth:`Engine.run`)."""

    def __init__(self, engine: EngineBase | None = None, port: int = 0,
                 host: str = "127.0.0.1", hz: float | None = None) -> None:
        self.registry = CollectorRegistry()
        buckets = (DEFAULT_BUCKETS if hz is None
                   else tuple(round(b / hz, 9) for b in BUDGET_BUCKETS))
        self._tick_seconds = Histogram(
            "agentloop_tick_seconds", "wall time of the engine step of each tick (the status "
            "line's p50/p99)", buckets=buckets, registry=self.registry)
        self._collector = _EngineCollector()
        self.registry.register(self._collector)
        if engine is not None:
            self.attach(engine)
        self._server: Any
        self._thread: threading.Thread | None
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def attach(self, engine: EngineBase) -> None:
        """Serve ``engine``'s figures (started: its metrics exist from :meth:`start` on)."""
        self._collector.attach(engine)

    def observe(self, info: TickInfo) -> None:
        """Record one tick's engine step (``info.wall_s``)."""
        self._tick_seconds.observe(info.wall_s)

    def close(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        thread.join()

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
