"""The janitor of ``agentloop serve``: a small child process that outlives its server only to
remove the server's shared memory if the server died without doing so (SIGKILL, a crash).

It reads the run ids to watch from the pipe the server holds (its stdin); at the pipe's end
(the server exited, however it did) it sweeps what is left of them: they are stale once the
server is gone (docs/abi.md, "Cleanup")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from multiprocessing import spawn
from pathlib import Path

#: the directory holding this ``engine`` package (first on the janitor's path)
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
#: the janitor's whole program: it waits with the standard library alone (a bare interpreter's
#: memory) and imports agentloop only to sweep
BOOTSTRAP = "\n".join((
    "import os, signal, sys",
    "signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the server's to act on",
    "signal.signal(signal.SIGHUP, signal.SIG_IGN)   # a closing terminal kills the server",
    "runs = [line.strip() for line in sys.stdin if line.strip()]",
    "ids = tuple(f'agentloop-{run}-' for run in runs)",
    "if ids and any(e.removeprefix('sem.').startswith(ids) for e in os.listdir('/dev/shm')):",
    "    sys.path.insert(0, sys.argv[1])",
    "    from engine.serve.janitor import sweep",
    "    sweep(runs)",
))
#: how long the janitor keeps trying to sweep a dead server's runs (seconds)
SWEEP_FOR_S = 30.0


class Janitor:
    """A running janitor; :meth:`watch` names the runs it removes if this process dies.
    :meth:`close` it after those runs are closed (it then finds nothing to do and ends)."""

    def __init__(self) -> None:
        executable = os.fsdecode(spawn.get_executable() or sys.executable)
        self._popen = subprocess.Popen([executable, "-c", BOOTSTRAP, PACKAGE_ROOT],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       text=True)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def watch(self, run_id: str) -> None:
        """Sweep the run ``run_id`` too if this process dies before closing it."""
        assert self._popen.stdin is not None
        self._popen.stdin.write(run_id + "\n")
        self._popen.stdin.flush()

    def close(self, timeout_s: float = 10.0) -> None:
        """End the pipe and reap the janitor (which sweeps whatever is left of its runs)."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            self._popen.stdin.close()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()

    def __enter__(self) -> Janitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sweep(run_ids: Sequence[str]) -> None:
    """Remove what is left of ``run_ids`` (the server has exited, however it did)."""
    from engine.runtime.shm import entries_of, sweep_stale

    warnings.simplefilter("ignore")                # other users' leftovers are not ours
    deadline = time.monotonic() + SWEEP_FOR_S
    while entries_of(run_ids) and time.monotonic() < deadline:
        # a client testing the server's lock holds it for an instant: try again
        sweep_stale()
        if entries_of(run_ids):
            time.sleep(0.05)
