"""The pymdp peers run in child processes: pymdp 1.x in its own venv (:mod:`perf.pymdp_jax`),
and pymdp 0.0.7.1's memory and create time."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from perf.bench.config import PERF_DIR


class JaxPeer:
    """The pymdp 1.x child process (:mod:`perf.pymdp_jax`), spoken to in JSON lines."""

    def __init__(self, python: Path, timeout_s: float = 600.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._tmp = tempfile.TemporaryDirectory(prefix="agentloop-bench-")
        self._stderr = open(Path(self._tmp.name) / "child.err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), str(PERF_DIR / "pymdp_jax.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, cwd=self._tmp.name)
        self.timeout_s = timeout_s
        self.models: dict[str, str] = {}
        self.base_rss = 0
        self.info = self.ask({"op": "hello"}, 120.0)
        self.base_rss = self.rss()

    def ask(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request, wait for its answer (``RuntimeError`` on failure or time-out)."""
        proc = self.proc
        if proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError(f"the pymdp 1.x child exited ({proc.returncode}){self._err()}")
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s or self.timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            why = "did not answer in time" if not ready else "exited"
            raise RuntimeError(f"the pymdp 1.x child {why} ({request.get('op')}){self._err()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "unknown error"))
        return answer

    def _err(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [x for x in self._stderr.read().splitlines() if x.strip()]
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:300]}" if lines else ""

    def rss(self) -> int:
        """The child's resident memory, bytes (0 when unknown)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def model_file(self, name: str, policy_len: int | None = None) -> str:
        """Write ``name``'s model for the child once (with agentloop's policies and E at
        ``policy_len`` when given, for the functional kernels); its path."""
        key = name if policy_len is None else f"{name}-L{policy_len}"
        if key not in self.models:
            from perf.models import model_by_name
            from perf.pymdp_jax import write_model

            m = model_by_name(name)
            extra = {}
            if policy_len is not None:
                policies = m.policies_for(policy_len)
                extra = {"policies": policies,
                         "E": m.prior_over_policies(policies.shape[0])}
            path = str(Path(self._tmp.name) / f"{key}.npz")
            write_model(Path(path), list(m.A), list(m.B), list(m.C), list(m.D),
                        [list(x) for x in m.A_factor_list], list(m.control_fac_idx), **extra)
            self.models[key] = path
        return self.models[key]

    def close(self) -> None:
        """Stop the child (politely, then by force) and remove its files."""
        proc = self.proc
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, self._stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._tmp.cleanup()


def pymdp_child(model_name: str, policy_len: int, k: int) -> None:
    """In a fresh process: create ``k`` pymdp 0.0.7.1 agents, step each once, print JSON."""
    import gc

    import numpy as np
    import psutil

    from engine import InferenceConfig
    from perf.models import model_by_name
    from world.process import ModelProcess

    proc = psutil.Process()
    model = model_by_name(model_name)
    config = InferenceConfig(policy_len=policy_len, dtype="float64")
    obs = ModelProcess(model, k, np.random.default_rng(0)).observe().copy()
    model.to_pymdp(config)                         # import pymdp, build what is shared
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    agents = [model.to_pymdp(config) for _ in range(k)]
    create_s = (time.perf_counter() - t0) / k
    for agent, o in zip(agents, obs, strict=True):
        agent.infer_states([int(x) for x in o])
        agent.infer_policies()
        agent.sample_action()
    gc.collect()
    rss1 = proc.memory_info().rss
    print(json.dumps({"agents": k, "policy_len": policy_len, "create_s_per_agent": create_s,
                      "bytes_per_agent": (rss1 - rss0) / k}))
