"""perf.factored_walk: the factored walk against the joint-belief walks, side by side."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("case", ["tmaze:1", "nope:1:10", "tmaze:x:10"])
def test_bad_case_exits_2(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    from perf.factored_walk import main

    with pytest.raises(SystemExit) as exc:
        main([case])
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_times_both_walks_and_names_the_layouts_pick() -> None:
    from perf.factored_walk import compare

    us = compare("multi-3x3", 1, 8, repeats=1)
    assert us["picked"] == 1.0 and us["factored"] > 0 and us["joint"] > 0
