"""``python -m perf.serve_handoff`` runs on a tiny configuration and prints its figures."""

from __future__ import annotations

import pytest

from perf.serve_handoff import main


def test_the_handoff_script_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--agents", "1000", "--ticks", "50"]) == 0
    out = capsys.readouterr().out
    for label in ("handshake alone (1 agent)", "1,000 agents, server copies only",
                  "1,000 agents, client copies obs too", "the copies alone"):
        assert label in out, label
    assert out.count(" p50 ") == 3
