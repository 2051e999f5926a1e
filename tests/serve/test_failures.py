"""``agentloop serve`` as a child process with Python clients: a killed client, a killed
server and a stopped server are each one clear line, and nothing is left in /dev/shm
(``served`` checks the server's and its engine's entries after each test)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import numpy as np
import psutil
import pytest

from engine.errors import ServeError
from engine.serve import ServeClient
from tests.serve.support import REPO, env, serve_command, served, unique_name

CLIENT = """
import sys, time
import numpy as np
from engine.serve import ServeClient
client = ServeClient(sys.argv[1], attach_timeout_s=60).attach()
for _ in range(3):
    client.step(np.zeros((client.n_agents, len(client.num_obs)), dtype=np.int64))
print("stepped", flush=True)
time.sleep(120)
"""


def test_a_killed_client_ends_the_server_with_one_line() -> None:
    name = unique_name()
    with served(name, "--agents", "50", "--size", "5") as server:
        client = subprocess.Popen([sys.executable, "-c", CLIENT, name], cwd=REPO, env=env(),
                                  stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdout.readline() == "stepped\n"
        client.kill()
        client.wait()
        client.stdout.close()
        assert server.wait(15) == 1
        last = server.stderr.read().strip().splitlines()[-1]
    assert last == (f"agentloop serve: error: client (pid {client.pid}) died without "
                    f"detaching after 3 ticks")


def test_a_killed_server_is_one_line_for_the_python_client() -> None:
    name = unique_name()
    with served(name, "--agents", "50", "--size", "5") as server:
        family = psutil.Process(server.pid).children()
        with ServeClient(name, attach_timeout_s=10) as client:
            client.step(np.zeros((50, 2), dtype=np.int64))
            server.send_signal(signal.SIGKILL)
            server.wait()
            with pytest.raises(ServeError) as caught:
                client.step(np.zeros((50, 2), dtype=np.int64))
        assert str(caught.value) == (f"agentloop serve {name!r}: the server (pid "
                                     f"{server.pid}) died after 1 ticks")
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive


def test_sigterm_stops_the_server_and_the_client_hears_it_closed() -> None:
    name = unique_name()
    with served(name, "--agents", "50", "--size", "5") as server:
        with ServeClient(name, attach_timeout_s=10) as client:
            client.step(np.zeros((50, 2), dtype=np.int64))
            server.send_signal(signal.SIGTERM)
            assert server.wait(15) == 143
            with pytest.raises(ServeError, match=r"the server \(pid \d+\) has closed"):
                client.step(np.zeros((50, 2), dtype=np.int64))
        assert "stopped by signal 15 after 1 ticks" in server.stderr.read()


def test_bad_command_lines_are_one_line_and_exit_2() -> None:
    for args, message in ((["--name", "a-b"], "--name 'a-b': use 1 to 64 letters"),
                          (["--world", "moon"], "unknown world 'moon'"),
                          (["--hz", "0"], "argument --hz: must be above 0")):
        done = subprocess.run(serve_command("x", *args), cwd=REPO, env=env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_help_says_what_serve_does() -> None:
    done = subprocess.run([sys.executable, "-m", "tools", "serve", "--help"], cwd=REPO,
                          env=env(), capture_output=True, text=True, timeout=60)
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    for phrase in ("shared-memory region", "docs/abi.md", "/agentloop-NAME-go",
                   "--name", "--agents", "--workers", "--seed", "--hz"):
        assert phrase in text, phrase
    listed = subprocess.run([sys.executable, "-m", "tools", "--help"], cwd=REPO, env=env(),
                            capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"^\s+serve\s", listed, flags=re.MULTILINE)


def test_a_killed_server_with_workers_leaves_no_process_and_no_memory() -> None:
    name = unique_name()
    with served(name, "--agents", "200", "--size", "5", "--workers", "1") as server:
        family = psutil.Process(server.pid).children()          # the worker and the janitor
        assert len(family) == 2
        with ServeClient(name, attach_timeout_s=10) as client:
            client.step(np.zeros((200, 2), dtype=np.int64))
            server.send_signal(signal.SIGKILL)
            server.wait()
            with pytest.raises(ServeError, match="died after 1 ticks"):
                client.step()
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive
