"""Record a run into a tick log, then replay it and check every action.

An ``Engine`` steps agents in the grid world under a per-tick budget; a ``TickRecorder`` writes
each tick (observations, actions, level, stale agents, and belief snapshots) to an MCAP file.
``replay`` rebuilds the engine from the log's header, re-runs every tick in this process and
compares the actions. Everything happens in a temporary directory. Run:
``python examples/record_replay.py`` (``agentloop replay run.mcap`` does the same for a log).
"""

import tempfile
from pathlib import Path

from engine import Engine
from engine.ticklog.reader import TickLogReader
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from world.grid import GridWorld

N_AGENTS = 1_000
TICKS = 30

with tempfile.TemporaryDirectory() as folder:
    path = str(Path(folder) / "run.mcap")
    world = GridWorld(size=10, n_agents=N_AGENTS, seed=0)
    with Engine(world.model(), n_agents=N_AGENTS, workers=2, seed=0) as engine:
        recorder = TickRecorder(engine, path, world=world.config(), snapshot_every=10)
        obs = world.reset(0)
        for _ in range(TICKS):
            obs = world.step(engine.step(obs, budget_s=0.05))
            recorder.record()                    # the tick engine.step just ran
        recorder.close()
    with TickLogReader(path) as reader:
        print(f"recorded {path.rsplit('/', 1)[-1]}: {reader.header.n_agents} agents, "
              f"ticks 0..{reader.last_tick}, {Path(path).stat().st_size:,} bytes")

    result = replay(path)
    print(f"replay: {result.ticks} ticks ({result.first_tick}..{result.last_tick}) in "
          f"{result.seconds:.2f} s, every action reproduced: {result.ok}")
    if result.divergence is not None:
        raise SystemExit(result.divergence.report())
    later = replay(path, from_tick=20)
    print(f"replay from tick 20: started at the snapshot of tick "
          f"{later.started_from_snapshot}, {later.ticks} ticks, ok: {later.ok}")
