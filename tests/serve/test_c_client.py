"""examples/c_client/client.c, built with the system C compiler, drives ``agentloop serve``:
the actions it receives are an in-process engine's on the same observations and seed, and a
killed server is one line on its stderr."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from engine import Engine
from tests.serve.support import REPO, build_c, served, unique_name
from world.registry import make_world


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c_client")
    return build_c(REPO / "examples" / "c_client" / "client.c", out / "client")


def observations(n: int, tick: int, num_obs: np.ndarray) -> np.ndarray:
    """The C client's rule: ``obs[i][m] = (7 i + 13 t + 5 m) mod num_obs[m]``."""
    return (7 * np.arange(n)[:, None] + 13 * tick + 5 * np.arange(len(num_obs))[None, :]
            ) % num_obs


def in_process_actions(n: int, ticks: int, seed: int) -> np.ndarray:
    model = make_world("grid", 5, n).model()
    num_obs = np.array(model.num_obs)
    with Engine(model, n, workers=0, seed=seed) as engine:
        return np.stack([engine.step(observations(n, t, num_obs)).copy()
                         for t in range(ticks)])


def drive(client: Path, tmp_path: Path, n: int, ticks: int, seed: int) -> None:
    name, dump = unique_name(), tmp_path / "actions.bin"
    with served(name, "--agents", str(n), "--size", "5", "--seed", str(seed)) as server:
        done = subprocess.run([str(client), name, str(ticks), str(dump)], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"client: {ticks} ticks of {n} agents")
        assert server.wait(30) == 0
        assert f"the client detached after {ticks} ticks" in server.stdout.read()
    received = np.fromfile(dump, dtype=np.int64).reshape(ticks, n, -1)
    assert np.array_equal(received, in_process_actions(n, ticks, seed))


def test_the_c_clients_actions_are_an_in_process_engines(client: Path, tmp_path: Path) -> None:
    drive(client, tmp_path, n=500, ticks=20, seed=11)


@pytest.mark.slow
def test_the_c_client_drives_10000_agents_for_100_ticks(client: Path, tmp_path: Path) -> None:
    drive(client, tmp_path, n=10_000, ticks=100, seed=3)


def test_a_killed_server_is_one_line_for_the_c_client(client: Path) -> None:
    name = unique_name()
    with served(name, "--agents", "100", "--size", "5") as server:
        family = psutil.Process(server.pid).children()          # the janitor
        proc = subprocess.Popen([str(client), name, "100000000"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        server.send_signal(signal.SIGKILL)
        server.wait()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert re.fullmatch(rf"client: agentloop serve '{name}': the server \(pid {server.pid}\) "
                        r"died after \d+ ticks\n", err), err
    _, alive = psutil.wait_procs(family, timeout=15)      # the janitor swept and ended
    assert not alive


def test_a_killed_c_client_ends_the_server_with_one_line(client: Path) -> None:
    name = unique_name()
    with served(name, "--agents", "100", "--size", "5") as server:
        proc = subprocess.Popen([str(client), name, "100000000"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        proc.kill()
        proc.wait()
        assert server.wait(15) == 1
        last = server.stderr.read().strip().splitlines()[-1]
    assert re.fullmatch(rf"agentloop serve: error: client \(pid {proc.pid}\) died without "
                        r"detaching after \d+ ticks", last), last
