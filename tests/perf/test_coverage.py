"""perf.coverage: the per-agent gaps between updates, measured from the stale flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perf.coverage import longest_gaps, main


def test_longest_gaps_are_the_longest_stale_runs() -> None:
    rng = np.random.default_rng(3)
    stale = rng.random((40, 21)) < 0.7                # ticks x agents (21: not a multiple of 8)
    stale[:, 0] = True                                 # never updated: 40
    stale[:, 1] = False                                # always updated: 0
    expected = []
    for agent in range(stale.shape[1]):                # the reference: a plain loop
        run = best = 0
        for flag in stale[:, agent]:
            run = run + 1 if flag else 0
            best = max(best, run)
        expected.append(best)
    packed = np.packbits(stale.astype(np.uint8), axis=1)
    np.testing.assert_array_equal(longest_gaps(packed, 21), expected)
    assert expected[0] == 40 and expected[1] == 0


@pytest.mark.parametrize("world", ["grid", "static"])
def test_a_tiny_run_reports_its_gaps(tmp_path: Path, capsys, world: str) -> None:  # noqa: ANN001
    path = tmp_path / "coverage.json"
    assert main(["--agents", "300", "--hz", "50", "--ticks", "6", "--workers", "0",
                 "--world-size", "5", "--world", world, "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["world"] == "grid 5" + (" (static)" if world == "static" else "")
    assert result["agents"] == 300 and result["ticks"] == 6
    gap = result["gap_ticks"]
    assert 0 <= gap["median"] <= gap["p99"] <= gap["max"] <= 6
    assert sum(result["stale_agent_ticks"].values()) == round(result["stale_share"] * 6 * 300)
    assert "longest run without an update per agent" in capsys.readouterr().out
