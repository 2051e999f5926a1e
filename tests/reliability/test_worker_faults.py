"""A worker that dies at any point of a tick loses nothing: the tick finishes (the other
worker steps what it never took; a chunk it was computing is stale), the worker is respawned,
no agent is left half-updated, and the run replays exactly from its tick log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import Engine, InferenceConfig
from engine.runtime.faults import ENV
from engine.runtime.journal import FIELDS
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from world.grid import GridWorld

PHASES = ["wait", "compute", *(f"commit-{name}" for name in FIELDS), "done"]


@pytest.mark.parametrize("phase", PHASES)
def test_worker_dying_at_any_phase_leaves_consistent_agents(tmp_path: Path, phase: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv(ENV, f"worker=1,tick=3,phase={phase}")
    world = GridWorld(6, 800, seed=2)
    path = str(tmp_path / "faulty.mcap")
    config = InferenceConfig(action_selection="stochastic", alpha=8.0)
    with Engine(world.model(), 800, workers=2, config=config, seed=4, chunk=64) as engine:
        recorder = TickRecorder(engine, path, snapshot_every=0)
        obs = world.reset(0)
        stale_counts, respawned_by = [], []
        for _ in range(10):
            actions = engine.step(obs, budget_s=5.0)
            recorder.record()
            stale_counts.append(engine.last_tick.stale_agents)
            respawned_by.append(engine.respawns)
            obs = world.step(actions)
        recorder.close()
        live_state = engine.agent_state()
        respawns, recovered = engine.respawns, engine.recovered_commits
    assert respawns == 1
    assert recovered == (1 if phase.startswith("commit-") else 0)
    # it dies in its first chunk from tick 3 on (64 agents); the other worker helps with the
    # chunks it never took, in that tick and while the replacement starts, so only a chunk it
    # was computing is stale (one it was committing the master finishes from its journal)
    died = respawned_by.index(1)
    assert 3 <= died <= 5, respawned_by
    assert stale_counts[died] == (64 if phase == "compute" else 0)
    assert sum(stale_counts) == stale_counts[died]
    result = replay(path, keep_state=True)
    assert result.ok and result.ticks == 10, result.divergence and result.divergence.report()
    for name, values in live_state.items():
        np.testing.assert_array_equal(result.final_state[name], values, err_msg=name)
