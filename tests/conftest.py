"""Shared fixtures: every test must leave /dev/shm as it found it. A long session first starts
``tests/warm_kernels.py`` in the background (its docstring says why). Under pytest-xdist a test
marked ``alone`` (its wall-clock bounds need the machine) runs while the other workers wait."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.runtime.shm import leftover_entries

REPO = Path(__file__).resolve().parents[1]
#: sessions of fewer tests than this do not start the background compile
WARM_UP_MIN_TESTS = 100
_warm_up = pytest.StashKey[subprocess.Popen]()
#: the lock file a pytest-xdist controller shares with its workers, and a worker's open fd
_alone_path = pytest.StashKey[str]()
_alone_fd = pytest.StashKey[int]()
ALONE_LOCK = "agentloop_alone_lock"


def _start_warm_up(config: pytest.Config) -> None:
    if _warm_up in config.stash or config.option.collectonly:
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    config.stash[_warm_up] = subprocess.Popen(
        [sys.executable, "-m", "tests.warm_kernels"], cwd=REPO, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pytest_collection_finish(session: pytest.Session) -> None:
    if (len(session.items) >= WARM_UP_MIN_TESTS
            and not hasattr(session.config, "workerinput")):    # xdist: the controller starts it
        _start_warm_up(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:  # noqa: ANN001
    if len(ids) >= WARM_UP_MIN_TESTS:
        _start_warm_up(node.config)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        path = workerinput.get(ALONE_LOCK)
        if path:
            config.stash[_alone_fd] = os.open(path, os.O_RDWR)
    elif getattr(config.option, "numprocesses", None):
        fd, path = tempfile.mkstemp(prefix="agentloop-pytest-", suffix=".lock")
        os.close(fd)
        config.stash[_alone_path] = path


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # noqa: ANN001
    path = node.config.stash.get(_alone_path, None)
    if path:
        node.workerinput[ALONE_LOCK] = path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ANN201
    """Under pytest-xdist: every test holds the workers' shared lock, an ``alone`` test holds
    it exclusively (setup, call and teardown)."""
    fd = item.config.stash.get(_alone_fd, None)
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX if item.get_closest_marker("alone") else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def pytest_sessionfinish(session: pytest.Session) -> None:
    proc = session.config.stash.get(_warm_up, None)
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def pytest_unconfigure(config: pytest.Config) -> None:
    fd = config.stash.get(_alone_fd, None)
    if fd is not None:
        os.close(fd)
    path = config.stash.get(_alone_path, None)
    if path:
        Path(path).unlink(missing_ok=True)


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
