"""Run ``agentloop run`` in a child process and wait for its first status line (for tests
that signal or kill a live run)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def live_run(*args: str, stderr: int = subprocess.DEVNULL,
             timeout_s: float = 120.0) -> Iterator[subprocess.Popen[str]]:
    """``agentloop run *args`` started and past its first tick; killed on the way out if it
    still runs."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "tools", "run", *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in proc.stdout:                       # the first status line
            if line.startswith("tick ") or time.monotonic() > deadline:
                break
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
