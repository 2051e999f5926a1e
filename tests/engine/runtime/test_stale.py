"""Stale agents by reason (issue 18): one classification (engine/runtime/stale.py) for the
tick info, the metrics, the tick log, --status-json, Prometheus, inspect and the status line."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from engine import Engine, InferenceConfig
from engine.runtime.degrade import ROTATING_FRACTION, STALE_ACTIONS
from engine.runtime.faults import ENV
from engine.runtime.metrics import STATUS_WIDTH, TickMetrics
from engine.runtime.stale import (
    MASTER,
    STALE_REASONS,
    StaleCounts,
    count_stale,
    describe,
    percent,
    rotated_stale,
)
from engine.ticklog.reader import TickLogReader
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from tools.inspect.summary import summarize
from tools.inspect.text import format_summary
from tools.status_json import StatusJson
from world.models import grid_model

N, CHUNK = 640, 32


def _obs(n: int, tick: int) -> np.ndarray:
    return np.stack([np.arange(n) % 16, np.full(n, tick % 2)], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- the rules
def _rotated_out(n: int, chunk: int, tick: int) -> int:
    """Agents of a part of ``n`` in the chunks the rotating fraction leaves out in ``tick``."""
    return int(np.sum((np.arange(n) // chunk + tick) % 2 == 1))


def test_rotated_stale_counts_the_other_half_of_the_chunks() -> None:
    rng = np.random.default_rng(2)
    for n, chunk in [(640, 32), (93, 10), (5, 32), (0, 8), (95, 10)]:
        flags = (rng.random(n) < 0.6).astype(np.uint8)
        for tick in range(3):
            off = (np.arange(n) // chunk + tick) % 2 == 1
            assert rotated_stale(flags, chunk, tick) == int(flags[off].sum())
            assert rotated_stale(np.ones(n, np.uint8), chunk, tick) == _rotated_out(n, chunk,
                                                                                   tick)


def test_count_stale_precedence_and_owners() -> None:
    flags = np.zeros(100, dtype=np.uint8)
    flags[40:100] = 1                                # worker 1's part 50..100 and 40..50
    parts = [[(0, 50, 0), (50, 100, 1)]]
    assert count_stale([flags], parts, [10], 0, 0) == StaleCounts(deadline=60)
    assert count_stale([flags], parts, [10], 0, 0, failed=[1]) == StaleCounts(deadline=10,
                                                                               worker=50)
    assert count_stale([flags], parts, [10], 0, 0, forced=True) == StaleCounts(forced=60)
    assert count_stale([flags], parts, [10], 0, STALE_ACTIONS, [1]) == StaleCounts(degraded=60)
    rotating = np.zeros(100, dtype=np.uint8)
    for lo, hi, _ in parts[0]:                       # the other half's chunks, each part
        rotating[lo:hi] = (np.arange(hi - lo) // 10) % 2
    rotating[90:100] = 1                             # and worker 1 died before its last
    counts = count_stale([rotating], parts, [10], 0, ROTATING_FRACTION, failed=[1])
    assert counts == StaleCounts(worker=10, degraded=2 * _rotated_out(50, 10, 0)) == \
        StaleCounts(worker=10, degraded=40)
    assert counts.total == int(rotating.sum())
    whole = [[(0, 100, MASTER)]]
    assert count_stale([flags], whole, [10], 0, 0, failed=[0, 1]) == StaleCounts(deadline=60)


def test_counts_add_convert_and_check() -> None:
    a, b = StaleCounts(deadline=3, forced=1), StaleCounts(deadline=1, worker=2)
    assert (a + b).as_dict() == {"deadline": 4, "worker": 2, "degraded": 0, "forced": 1}
    assert list(a.as_dict()) == list(STALE_REASONS) and a.nonzero() == {"deadline": 3,
                                                                         "forced": 1}
    assert StaleCounts.from_dict({"worker": 2, "deadline": 1, "later": 9}) == b
    for bad in ({"worker": -1}, {"deadline": 1.5}, {"degraded": True}, {"forced": "2"}):
        with pytest.raises(ValueError, match="stale_reasons: .* whole number"):
            StaleCounts.from_dict(bad)


def test_shares_are_written_briefly() -> None:
    assert [percent(c, 1000) for c in (0, 120, 83, 1, 1000)] == ["0%", "12%", "8.3%", "0.1%",
                                                               "100%"]
    assert percent(1, 1_000_000) == "<0.1%"
    counts = StaleCounts(deadline=83, degraded=37)
    assert describe(counts, 1000) == "stale 12% (dl 8.3%, deg 3.7%)"
    assert describe(counts, 1000, "names") == "stale 12% (dl, deg)"
    assert describe(counts, 1000, "total") == "stale 12%"
    assert describe(StaleCounts(), 1000) == "stale 0%"


def _longest_that_fits(line: str, counts: StaleCounts, n: int) -> None:
    """``line`` holds the richest form of ``counts`` that keeps it within STATUS_WIDTH."""
    assert len(line) <= STATUS_WIDTH, line
    forms = [describe(counts, n, form) for form in ("shares", "names", "total")]
    shown = next(i for i, text in enumerate(forms) if f" {text} " in line)
    for richer in forms[:shown]:
        assert len(line.replace(forms[shown], richer)) > STATUS_WIDTH, (line, richer)


def test_the_status_line_fits_100_columns_whatever_the_figures() -> None:
    """The reasons' shares where they fit, else their names, else the total alone."""
    n = 1_000_000
    cases = [(999_999, 99_999, 0.9999, StaleCounts(deadline=83_456, worker=31_234,
                                                   degraded=4_000, forced=1)),
             (99_999, 9_999, 0.9999, StaleCounts(deadline=83_456, worker=31_234)),
             (9_999, 99, 0.0853, StaleCounts(deadline=83_456, worker=31_234)),
             (999, 0, 0.0853, StaleCounts(deadline=83_456))]
    lines = []
    for ticks, missed, wall, counts in cases:
        metrics = TickMetrics(n, window=5)
        metrics.watch([os.getpid()])
        for _ in range(5):
            metrics.record(wall, 0.1, 2, counts)
        metrics._count, metrics.missed = ticks, missed          # a long run's figures
        lines.append(metrics.status_line())
        _longest_that_fits(lines[-1], counts, n)
    assert " stale 12% " in lines[0] and " stale 11% (dl, wk) " in lines[1]
    assert " stale 8.3% (dl 8.3%) " in lines[3]


# ----------------------------------------------------------------------------- the engine
def test_each_reason_from_the_engine_and_everywhere_it_is_reported(tmp_path: Path) -> None:
    """A deadline cut, the rotating fraction, both at once, stale actions and no stale agent:
    the tick info, the tick log (and replay), the metrics, the status line, --status-json,
    Prometheus and inspect tell the same counts."""
    pytest.importorskip("prometheus_client")
    from engine.runtime.prometheus import MetricsEndpoint

    log, status = tmp_path / "run.mcap", tmp_path / "status.jsonl"
    half = _rotated_out(N, CHUNK, 2)
    plan = [(0.0, None, StaleCounts(deadline=N - CHUNK)),           # one chunk, then the cut
            (None, ROTATING_FRACTION, StaleCounts(degraded=_rotated_out(N, CHUNK, 1))),
            (0.0, ROTATING_FRACTION, StaleCounts(deadline=N - half - CHUNK, degraded=half)),
            (None, STALE_ACTIONS, StaleCounts(degraded=N)),
            (None, None, StaleCounts())]
    with Engine(grid_model(4), N, workers=0, chunk=CHUNK, degrade=False) as engine, \
            MetricsEndpoint(engine, port=0) as endpoint:
        recorder = TickRecorder(engine, str(log), snapshot_every=0)
        writer = StatusJson(str(status), engine)
        total = StaleCounts()
        for tick, (budget, level, expected) in enumerate(plan):
            engine.step(_obs(N, tick), budget_s=budget, level=level)
            info = engine.last_tick
            assert info.stale_reasons == expected, tick
            assert info.stale_agents == expected.total == int(engine.stale.sum())
            recorder.record()
            endpoint.observe(info)
            total = total + expected
            snap = engine.metrics.snapshot()
            assert snap.stale_reasons == expected.as_dict()
            assert snap.stale_agent_ticks == total.as_dict()
            line = engine.metrics.status_line()
            assert describe(expected, N) in line, line
            writer.write()
            scraped = _scrape(endpoint.url)
            assert scraped["agentloop_stale_agents"] == expected.as_dict()
            assert scraped["agentloop_stale_agent_ticks_total"] == total.as_dict()
        writer.close()
        recorder.close()
    lines = [json.loads(text) for text in status.read_text().splitlines()]
    assert [line["stale_reasons"] for line in lines] == [e.as_dict() for _, _, e in plan]
    assert lines[-1]["stale_agent_ticks"] == total.as_dict()
    with TickLogReader(str(log)) as reader:
        recorded = [record.stale_reasons for record in reader.ticks()]
    assert recorded == [e if e.total else None for _, _, e in plan]
    stale = summarize(log)["stale"]
    assert stale["by_reason"] == total.as_dict() and stale["unrecorded"] == 0
    assert stale["total"] == total.total
    assert f"by reason: deadline {total.deadline:,}, degraded {total.degraded:,}" in \
        format_summary(summarize(log))
    result = replay(str(log))
    assert result.ok and result.ticks == len(plan)


def _scrape(url: str) -> dict[str, dict[str, float]]:
    """Metric name -> reason -> value, of the metrics labelled by reason."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "reason" in sample.labels:
                found.setdefault(sample.name, {})[sample.labels["reason"]] = int(sample.value)
    return found


def test_a_log_without_reasons_still_inspects_and_replays(tmp_path: Path) -> None:
    """Logs written before the reasons existed have no ``stale_reasons``: inspect counts their
    stale agent-ticks as unrecorded, and replay uses the stale sets as before."""
    log = tmp_path / "old.mcap"
    with Engine(grid_model(4), N, workers=0, chunk=CHUNK, degrade=False) as engine:
        recorder = TickRecorder(engine, str(log), snapshot_every=0)
        for tick in range(4):
            engine.step(_obs(N, tick), budget_s=0.0 if tick % 2 else None)
            recorder.record(dataclasses.replace(engine.last_tick, stale_reasons=None))
        recorder.close()
    with TickLogReader(str(log)) as reader:
        assert all(record.stale_reasons is None for record in reader.ticks())
    summary = summarize(log)
    assert summary["stale"]["unrecorded"] == summary["stale"]["total"] == 2 * (N - CHUNK)
    assert set(summary["stale"]["by_reason"].values()) == {0}
    assert f"{2 * (N - CHUNK):,} without a recorded reason" in format_summary(summary)
    result = replay(str(log))
    assert result.ok and result.ticks == 4


def test_a_worker_killed_in_its_chunk_leaves_it_stale_for_the_worker_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault injector kills worker 1 in its first chunk from tick 2 on: the other worker
    takes over the chunks it never took, so only that chunk is stale, for the worker reason
    (as in tests/reliability/test_worker_faults.py)."""
    monkeypatch.setenv(ENV, "worker=1,tick=2,phase=compute")
    n, chunk = 1024, 64
    with Engine(grid_model(4), n, workers=2, chunk=chunk,
                config=InferenceConfig(policy_len=1)) as engine:
        reasons, respawned_by = [], []
        for tick in range(10):
            engine.step(_obs(n, tick), budget_s=5.0)
            reasons.append(engine.last_tick.stale_reasons)
            respawned_by.append(engine.respawns)
        snap = engine.metrics.snapshot()
    assert respawned_by[-1] == 1
    died = respawned_by.index(1)
    assert reasons[died] == StaleCounts(worker=chunk)
    assert [r for t, r in enumerate(reasons) if t != died] == [StaleCounts()] * 9
    assert snap.stale_agent_ticks == StaleCounts(worker=chunk).as_dict()


def test_the_status_lines_stale_figure_parses_back() -> None:
    """The status line's stale figure is the describe() text, found by its pattern."""
    metrics = TickMetrics(N)
    metrics.record(0.01, 0.1, 0, StaleCounts(deadline=64, worker=32))
    found = re.search(r"stale (\S+) \(dl (\S+), wk (\S+)\)", metrics.status_line())
    assert found is not None
    assert found.groups() == (percent(96, N), percent(64, N), percent(32, N))
