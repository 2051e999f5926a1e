"""perf/RESULTS.md's bench markers enclose the generated report only: a full ``python -m perf``
replaces everything between them, so a hand-written section there would be lost."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "perf" / "RESULTS.md"


def test_only_the_generated_report_sits_between_the_bench_markers() -> None:
    text = RESULTS.read_text()
    start, end = "<!-- bench:start -->\n", "<!-- bench:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    block = text[text.index(start) + len(start):text.index(end)]
    assert block.startswith("## Benchmark report")
    headings = [line for line in block.splitlines() if line.startswith("## ")]
    assert len(headings) == 1, headings
