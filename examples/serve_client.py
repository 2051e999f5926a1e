"""Drive ``agentloop serve`` from another process: the simulator here imports only the client
(``ServeClient``), as a simulator in C would include ``include/agentloop_abi.h``.

The script starts the server itself (``python -m tools serve``), waits for its ready line,
steps a grid world for a few ticks through the shared-memory region, detaches (the server then
exits) and checks that the server left nothing behind. Run: ``python examples/serve_client.py``.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from engine.serve import ServeClient
from world.grid import GridWorld

N_AGENTS = 1_000
TICKS = 5
NAME = f"example_{os.getpid()}"      # the server's name; its region is /agentloop-NAME-serve
REPO = Path(__file__).resolve().parents[1]

server = subprocess.Popen(
    [sys.executable, "-m", "tools", "serve", "--name", NAME, "--agents", str(N_AGENTS),
     "--size", "5", "--seed", "0", "--attach-timeout", "300"],
    cwd=REPO, stdout=subprocess.PIPE, text=True)
try:
    for line in server.stdout:                       # the banner, then the ready line
        if line.startswith("agentloop serve: ready"):
            print(line.strip())
            break
    simulator = GridWorld(size=5, n_agents=N_AGENTS, seed=0)   # stands in for your simulator
    obs = simulator.reset(0)
    with ServeClient(NAME, attach_timeout_s=60) as client:
        for _ in range(TICKS):
            actions = client.step(obs)               # written into, and read from, the region
            info = client.last_tick
            moves = np.bincount(actions[:, 0], minlength=5).tolist()
            print(f"tick {info.tick}: {info.wall_s * 1e3:.1f} ms in the engine, stale "
                  f"{info.stale_agents}, moves (stay, up, down, left, right) {moves}")
            obs = simulator.step(actions)
    print(server.stdout.read().strip())              # "... the client detached after 5 ticks"
    assert server.wait(60) == 0
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
left = [e for e in os.listdir("/dev/shm") if f"agentloop-{NAME}-" in e]
assert not left, f"the server left {left}"
print("server exited; nothing left in /dev/shm")
