"""Only the process that started an engine may use it or clean it up: a forked child that
exits normally (its with block, atexit, finalizers) leaves its parent's engine running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


FORK = textwrap.dedent("""
    import os
    import sys
    import numpy as np
    from engine import Engine
    from engine.runtime.shm import entries_of
    from world.models import grid_model

    model = grid_model(4)
    n = 400
    rng = np.random.default_rng(0)
    ticks = [np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)
             for _ in range(4)]
    with Engine(model, n, workers=0) as reference:
        expected = [np.array(reference.step(obs)) for obs in ticks]
    with Engine(model, n, workers=2, chunk=50) as engine:
        assert (engine.step(ticks[0]) == expected[0]).all()
        entries = sorted(entries_of([engine.run_id]))
        workers = engine.worker_pids
        pid = os.fork()
        if pid == 0:
            sys.exit(0)        # the child's normal exit: the with block, atexit, finalizers
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        for obs, want in zip(ticks[1:], expected[1:]):
            got = engine.step(obs, budget_s=30.0)
            assert engine.last_tick.stale_agents == 0, engine.last_tick
            assert (got == want).all()
        assert sorted(entries_of([engine.run_id])) == entries
        assert engine.respawns == 0 and engine.worker_pids == workers
        print("ok", flush=True)
""")


def test_a_forked_child_exiting_normally_leaves_the_parents_engine_alone() -> None:
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]


def test_a_forked_child_cannot_step_the_parents_engine() -> None:
    script = textwrap.dedent("""
        import os
        import numpy as np
        from engine import Engine
        from engine.errors import EngineStateError
        from world.models import grid_model
        with Engine(grid_model(3), 10, workers=0) as engine:
            pid = os.fork()
            if pid == 0:
                try:
                    engine.step(np.zeros((10, 2), dtype=np.int64))
                    os._exit(1)
                except EngineStateError as exc:
                    os._exit(0 if "fork" in str(exc) else 2)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            engine.step(np.zeros((10, 2), dtype=np.int64))
            print(code, engine.tick)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "1"]
