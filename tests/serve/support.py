"""What the serve tests share: a fake engine (no kernels), unique server names, a server run
in a thread or as ``agentloop serve`` in a child process, the C client built with the system
compiler, and the /dev/shm checks."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine.errors import ObservationError
from engine.runtime.shm import entries_of
from engine.runtime.tick import TickInfo
from engine.serve import include_dir
from engine.serve.server import Server

REPO = Path(__file__).resolve().parents[2]
_names = itertools.count()


def unique_name() -> str:
    """A server name no other test (nor a test session beside this one) uses."""
    return f"t{os.getpid()}_{next(_names)}"


class FakeEngine:
    """What the server needs of an engine, without kernels: action ``f`` of agent ``i`` is
    ``(sum of its observations + tick + f) mod num_controls[f]``; observations are checked."""

    def __init__(self, n: int, num_obs: tuple[int, ...] = (3, 5),
                 num_controls: tuple[int, ...] = (4, 2), step_s: float = 0.0) -> None:
        self.model = SimpleNamespace(num_obs=num_obs, num_controls=num_controls)
        self.n_agents, self.seed, self.tick = n, 7, 0
        self.last_tick: TickInfo | None = None
        self.stop_requested: int | None = None
        self.stale = np.zeros(n, dtype=np.uint8)
        self.step_s = step_s
        self._actions = np.zeros((n, len(num_controls)), dtype=np.int64)

    def step(self, obs: np.ndarray, budget_s: float | None = None) -> np.ndarray:
        bad = (obs < 0) | (obs >= np.array(self.model.num_obs))
        if bad.any():
            agent, modality = np.argwhere(bad)[0]
            raise ObservationError(f"observation of agent {agent}, modality {modality} out of "
                                   f"range: {obs[agent, modality]}")
        time.sleep(self.step_s)
        self._actions[:] = expected_fake_actions(obs, self.tick, self.model.num_controls)
        self.last_tick = TickInfo(self.tick, 0.001, budget_s, 0, 0)
        self.tick += 1
        return self._actions


def expected_fake_actions(obs: np.ndarray, tick: int, num_controls: tuple[int, ...]
                          ) -> np.ndarray:
    total = obs.sum(axis=1, keepdims=True) + tick + np.arange(len(num_controls))
    return total % np.array(num_controls)


@contextlib.contextmanager
def threaded_server(engine: Any, name: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """A :class:`Server` of ``engine`` open in this process, serving in a thread. Yields a dict:
    ``server``, and ``outcome`` or ``error`` once :meth:`Server.serve` ended (``join()``
    waits for that). On the way out a server still serving is stopped; nothing may be left in
    /dev/shm."""
    result: dict[str, Any] = {}
    server = Server(engine, name, **kwargs).open()

    def serve() -> None:
        try:
            result["outcome"] = server.serve()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            result["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    result.update(server=server, join=lambda: thread.join(10) or result)
    thread.start()
    try:
        yield result
    finally:
        engine.stop_requested = 15            # a thread still serving ends at its next poll
        thread.join(10)
        server.close()
    assert not thread.is_alive(), "the server did not end"
    assert entries_of([name]) == [], "the server left shared memory"


def serve_command(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tools", "serve", "--name", name, *args]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


@contextlib.contextmanager
def served(name: str, *args: str, timeout_s: float = 300.0
           ) -> Iterator[subprocess.Popen[str]]:
    """``agentloop serve --name name *args`` in a child process, past its ready line; killed
    on the way out if it still runs, and then its shared memory must be gone."""
    proc = subprocess.Popen(serve_command(name, *args), cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in proc.stdout:
            if line.startswith("agentloop serve: ready") or time.monotonic() > deadline:
                break
        else:
            raise AssertionError(f"the server ended before it was ready: {proc.stderr.read()}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    wait_until_clean(name, proc.pid)


def leftovers(name: str, server_pid: int) -> list[str]:
    """/dev/shm entries of the server ``name`` and of the engine its process owned."""
    engine_runs = [e for e in os.listdir("/dev/shm")
                   if e.removeprefix("sem.").startswith(f"agentloop-{server_pid}x")]
    return entries_of([name]) + engine_runs


def wait_until_clean(name: str, server_pid: int, timeout_s: float = 15.0) -> None:
    """The server's and its engine's entries are gone (the janitor may still be sweeping)."""
    deadline = time.monotonic() + timeout_s
    while leftovers(name, server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(name, server_pid) == [], "shared memory outlived the server"


def c_compiler() -> str:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    return compiler


def build_c(source: Path, out: Path) -> Path:
    """``source`` compiled as C99 against the installed agentloop_abi.h, warnings as
    errors."""
    done = subprocess.run([c_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2",
                           "-I", include_dir(), str(source), "-o", str(out),
                           "-lpthread", "-lrt"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out
