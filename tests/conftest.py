"""Shared fixtures: every test must leave /dev/shm as it found it. A long session first starts
``tests/warm_kernels.py`` in the background (its docstring says why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.runtime.shm import leftover_entries

REPO = Path(__file__).resolve().parents[1]
#: sessions of fewer tests than this do not start the background compile
WARM_UP_MIN_TESTS = 100
_warm_up = pytest.StashKey[subprocess.Popen]()


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if (len(session.items) < WARM_UP_MIN_TESTS or config.option.collectonly
            or hasattr(config, "workerinput")):           # not in a pytest-xdist worker
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    config.stash[_warm_up] = subprocess.Popen(
        [sys.executable, "-m", "tests.warm_kernels"], cwd=REPO, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session: pytest.Session) -> None:
    proc = session.config.stash.get(_warm_up, None)
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _own_entries() -> set[str]:
    """Entries of runs this process owns (run ids start with the owner's pid), so another
    test session running beside this one is not mistaken for a leak."""
    mine = f"{os.getpid()}x"
    return {e for run_id, entries in leftover_entries().items() if run_id.startswith(mine)
            for e in entries}


@pytest.fixture(autouse=True)
def no_shared_memory_leaks():  # noqa: ANN201
    before = _own_entries()
    yield
    leaked = sorted(_own_entries() - before)
    assert not leaked, f"shared memory left in /dev/shm: {leaked}"
