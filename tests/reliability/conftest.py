"""Tick logs the fuzzing tests damage and replay: a plain log and a recorded engine run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine import Engine
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from engine.ticklog.writer import TickLogWriter
from tests.reliability.fuzz_support import LOG_AGENTS, log_header
from world.models import grid_model


@pytest.fixture(scope="module")
def plain_log(tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """A closed log in many small chunks: 8 ticks, snapshots at ticks 2 and 5, a footer."""
    path = tmp_path_factory.mktemp("ticklog") / "plain.mcap"
    rng = np.random.default_rng(4)
    ticks = {}
    with TickLogWriter(path, log_header(b"not really a model"), chunk_size=300) as writer:
        for t in range(8):
            obs = rng.integers(0, 9, size=(LOG_AGENTS, 2))
            act = rng.integers(0, 5, size=(LOG_AGENTS, 1))
            writer.write_tick(t, obs, act, wall_time=100.0 + t, level=t % 2,
                              stale_agents=[t % LOG_AGENTS], timings={"wall_s": 0.01})
            ticks[t] = (obs, act)
            if t in (2, 5):
                writer.write_beliefs(t, [rng.random((LOG_AGENTS, 3)).astype(np.float32),
                                         np.full((LOG_AGENTS, 2), t, np.uint16)],
                                     {"names": ["qs", "other"]})
    return path, ticks

@pytest.fixture(scope="module")
def replayable_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded engine run (6 ticks, snapshots every 2) that replays."""
    path = tmp_path_factory.mktemp("replay") / "run.mcap"
    model = grid_model(2)
    rng = np.random.default_rng(5)
    with Engine(model, LOG_AGENTS, workers=0, seed=2, chunk=2) as eng:
        recorder = TickRecorder(eng, str(path), snapshot_every=2)
        for _ in range(6):
            eng.step(np.stack([rng.integers(0, o, size=LOG_AGENTS) for o in model.num_obs],
                              axis=1))
            recorder.record()
        recorder.writer.close()
    assert replay(str(path)).ok
    return path
