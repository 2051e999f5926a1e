"""SIGTERM / SIGINT to the master: the current tick finishes, everything is cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from engine.runtime.shm import entries_of

SCRIPT = textwrap.dedent("""
    import sys
    from engine import Engine
    from world.models import grid_model
    from world.process import ProcessWorld
    model = grid_model(5)
    engine = Engine(model, 2000, workers=2).start()
    print(engine.run_id, *engine.worker_pids, flush=True)
    try:
        engine.run(ProcessWorld(model, 2000), hz=20.0, ticks=10_000)
    except SystemExit as exc:
        print("ticks", engine.tick, flush=True)
        raise
""")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 128 + signal.SIGTERM),
                                      (signal.SIGINT, None)])
def test_signal_finishes_the_tick_and_cleans_up(sig: int, code: int | None) -> None:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline().split()
    run_id, workers = first[0], [int(p) for p in first[1:]]
    time.sleep(1.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    if code is not None:
        assert proc.returncode == code, err
        assert "ticks" in out
    else:
        assert "KeyboardInterrupt" in err
    assert entries_of([run_id]) == []
    for pid in workers:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
