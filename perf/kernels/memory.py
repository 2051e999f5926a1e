"""Memory per agent: the arrays ``Agents`` allocates, and the RSS growth of a large population
measured in a fresh child process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import numba
import numpy as np

from engine import Agents, GenerativeModel, InferenceConfig
from engine.model.layout import layout_of
from perf.kernels.plan import REPO_ROOT
from perf.models import model_by_name
from world.process import ModelProcess


def memory_per_agent(model: GenerativeModel, policy_len: int, n: int) -> dict[str, Any]:
    """Bytes per agent of the arrays ``Agents`` allocates, the shared layout and the scratch."""
    agents = Agents(model, n, InferenceConfig(policy_len=policy_len), threads=1)
    memory = agents.memory()
    return {"policy_len": policy_len, "per_agent_bytes": float(memory.per_agent_bytes),
            "per_agent_breakdown": memory.per_agent_breakdown,
            "shared_model_bytes": int(memory.shared_bytes),
            "scratch_bytes": int(memory.scratch_bytes),
            "scratch_threads": numba.config.NUMBA_NUM_THREADS}


def rss_per_agent(model_name: str, policy_len: int, n: int, seed: int = 0) -> dict[str, Any]:
    """RSS growth per agent of creating ``n`` agents, and after their first step.

    Measured in a fresh child process (so no memory freed earlier in this run is reused) with
    glibc's mmap threshold pinned at 64 KiB (so every large array is its own mapping and the RSS
    counts it exactly). The model layout and the observations are made before the baseline:
    the layout is the shared, counted-once cost, the observations belong to the caller.
    """
    return measure_in_child(f"from perf.kernels.memory import _rss_child; _rss_child("
                            f"{model_name!r}, {int(policy_len)}, {int(n)}, {int(seed)})",
                            "RSS child")


def measure_in_child(code: str, what: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (glibc's mmap threshold pinned at 64 KiB, so RSS
    counts every large array) and return the JSON its last output line holds."""
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH"))
                                        if p)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_child(model_name: str, policy_len: int, n: int, seed: int) -> None:
    import psutil

    proc = psutil.Process()
    model = model_by_name(model_name)
    config = InferenceConfig(policy_len=policy_len)
    layout_of(model, config)
    obs = ModelProcess(model, n, np.random.default_rng(seed)).observe().copy()
    for warm in {1, min(n, 128)}:                   # load kernels and start the thread pool
        Agents(model, warm, config).step(obs[:warm])
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    agents = Agents(model, n, config, seed=seed)
    create_s = time.perf_counter() - t0
    rss1 = proc.memory_info().rss
    t0 = time.perf_counter()
    agents.step(obs)
    step_s = time.perf_counter() - t0
    rss2 = proc.memory_info().rss
    print(json.dumps({"n": n, "policy_len": policy_len, "rss_before_mib": rss0 / 2 ** 20,
                      "bytes_per_agent_created": (rss1 - rss0) / n,
                      "bytes_per_agent_after_step": (rss2 - rss0) / n,
                      "create_s": create_s, "first_step_s": step_s}))


