"""perf.balance at a tiny size: per-worker busy times and the report's lines."""

from __future__ import annotations

from perf.balance import measure, report


def test_balance_measures_every_worker() -> None:
    result = measure(agents=400, hz=50.0, ticks=5, workers=2)
    assert len(result["busy_ms"]) == 2 and len(result["slowest_ticks_ms"]) == 5
    assert all(len(row) == 3 for row in result["slowest_ticks_ms"])
    assert result["wall_ms"]["p99"] >= result["wall_ms"]["p50"] > 0
    text = report(result)
    assert "worker 1 busy" in text and "master overhead" in text
