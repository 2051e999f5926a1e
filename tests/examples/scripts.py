"""Run a Python script as a user would (a child process, ``PYTHONPATH`` the repository) and
check that it left nothing in /dev/shm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.runtime.shm import leftover_entries

REPO = Path(__file__).resolve().parents[2]
#: long enough for a cold machine's first kernel compile; a warm script takes a few seconds
TIMEOUT_S = 600


def run_script(script: Path, cwd: Path, prints: bool = True
               ) -> subprocess.CompletedProcess[str]:
    """``python script`` in ``cwd``; fails the test on a non-zero exit, a leftover segment, or
    (with ``prints``) no output."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen([sys.executable, str(script)], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{script.name} ran past {TIMEOUT_S} s:\n{err[-3000:]}"
                                 ) from None
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}:\n{err[-3000:]}"
    assert out.strip() or not prints, f"{script.name} printed nothing"
    left = {run: e for run, e in leftover_entries().items() if run.startswith(f"{proc.pid}x")}
    assert not left, f"{script.name} left shared memory behind: {left}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
