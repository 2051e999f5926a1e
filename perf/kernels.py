"""Kernel benchmark: step latency, throughput, FLOP and bandwidth use, memory per agent.

Run ``python -m perf.kernels [--quick] [--json PATH]`` (from the repository root). Everything is
measured side by side in one run, on the standard ``grid-N`` models (``perf.models``) with
``policy_len`` 1 and 3:

* **step latency**: one agent, one full step (infer states, infer policies, select action), in
  process, median over up to ``latency_steps`` steps (fewer where a step is slow: each figure is
  capped at ``latency_budget_s`` seconds, and pymdp at ``policy_len`` 3 at
  ``pymdp_long_policy_steps`` steps; the table prints how many steps each median is over), for
  agentloop's Numba float32 kernel, agentloop's NumPy float64 reference backend and pymdp
  0.0.7.1's ``Agent`` (``infer_states``, ``infer_policies``, ``sample_action``);
* **throughput**: agent-steps per second of the Numba float32 kernel for N agents and 1 or 2
  threads, median (min, max) over the timed steps after warm-up steps; pymdp has no batching, so
  its throughput is ``1 / latency``, and every row carries the ratio to it;
* **share of the machine**: FLOPs and bytes of one agent step counted from the model sizes and
  the kernel's algorithm (:func:`step_cost`), against a float64 matmul's GFLOP/s and an array
  copy's GB/s measured in the same run;
* **memory**: per-agent bytes of the arrays ``Agents`` allocates, the shared model layout, and
  the RSS growth of creating (and stepping) a large population.

Observations are realistic: :class:`world.process.ModelProcess` simulates the model's own
generative process for every agent (a true state moved by the agent's chosen action through
``B``, outcomes sampled from ``A``'s column at the true state), outside the timed region;
only ``Agents.step`` (or the three pymdp calls) is timed. Every latency and throughput row
also records how many cores other processes kept busy while it ran (``other_load_cores``): on
a shared machine that says which figures to trust.

``--quick`` (grid-10 only, N up to 10k, shorter budgets) takes well under a minute on 2 cores;
a full run takes roughly 20-30 minutes (the 1M-agent rows and the policy_len 3 rows at 100k
agents dominate). ``--models``, ``--policy-lens``, ``--sizes``, ``--threads``,
``--latency-steps``, ``--rss-agents`` and ``--no-pymdp`` narrow a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from engine import Agents, GenerativeModel, InferenceConfig
from engine.model.layout import layout_of
from perf.models import model_by_name
from world.process import ModelProcess

#: pymdp's spm_MDP_G threshold: predicted states at or below it are skipped by the kernel.
EXP_M16 = math.exp(-16.0)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

_T0 = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ plan
@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run measures, and how many repeats it takes."""

    models: tuple[str, ...] = ("grid-5", "grid-10", "grid-20")
    policy_lens: tuple[int, ...] = (1, 3)
    sizes: tuple[int, ...] = (1, 100, 10_000, 100_000, 1_000_000)
    threads: tuple[int, ...] = (1, 2)
    #: largest population measured at policy_len >= 3 (125 policies: 155 tree nodes per step)
    max_agents_long_policy: int = 100_000
    #: ticks of the episode before timing: beliefs sharpen over the first few ticks, and the
    #: figures are meant for the steady state (with 2, 100k-agent rows timed ticks 3-7 only)
    warmup_steps: int = 10
    timed_steps: int = 5
    #: small populations take more timed steps (up to 1000) so the timed region lasts this long
    min_timed_seconds: float = 0.5
    latency_steps: int = 1000
    pymdp_long_policy_steps: int = 30
    latency_budget_s: float = 30.0
    latency_min_steps: int = 5
    #: a throughput row whose estimated time exceeds this is skipped (and says so)
    row_budget_s: float = 300.0
    rss_model: str = "grid-10"
    rss_policy_len: int = 1
    rss_agents: int = 1_000_000
    memory_sample_agents: int = 1000
    support_sample_agents: int = 2000
    matmul_n: int = 2000
    matmul_repeats: int = 3
    copy_mb: int = 512
    copy_repeats: int = 5
    pymdp: bool = True
    seed: int = 0


FULL = Plan()
#: ``--quick``: grid-10 only, N up to 10k, shorter latency budgets, smaller matmul and copy.
QUICK = Plan(
    models=("grid-10",), sizes=(1, 100, 10_000), min_timed_seconds=0.2,
    latency_budget_s=4.0, row_budget_s=30.0, matmul_n=1000, matmul_repeats=3, copy_mb=128,
    copy_repeats=3,
)


# ------------------------------------------------------------------------------------ stats
class OtherLoad:
    """CPU used by *other* processes while a measurement ran, in cores (0 = machine was ours).

    System-wide busy CPU time minus this process's own, over the wall time: on a shared machine
    a figure taken while another process held a core (``> 0.3`` or so) is not comparable,
    especially a 2-thread one.
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._psutil = psutil

    def _sample(self) -> tuple[float, float, float]:
        t = self._psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = self._proc.cpu_times()
        return time.perf_counter(), busy, own.user + own.system

    def __enter__(self) -> OtherLoad:
        self._start = self._sample()
        self.cores = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        wall = max(end[0] - self._start[0], 1e-9)
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        self.cores = max(0.0, others / wall)


def summary(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()),
            "p90": float(np.percentile(arr, 90)), "count": int(arr.size)}


# ------------------------------------------------------------------------------------ latency
StepFn = Callable[[np.ndarray], np.ndarray]


def _timed_steps(step: StepFn, world: ModelProcess, steps: int, budget_s: float,
                 min_steps: int) -> tuple[list[float], float]:
    """Time ``steps`` calls of ``step`` (stopping early past the budget); first call untimed."""
    obs = world.observe()
    t0 = time.perf_counter()
    world.advance(step(obs))
    first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    for i in range(steps):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = step(obs)
        times.append(time.perf_counter() - t0)
        world.advance(actions)
        if i + 1 >= min_steps and time.perf_counter() - start > budget_s:
            break
    return times, first


def _pymdp_step_fn(model: GenerativeModel, policy_len: int) -> StepFn:
    agent = model.to_pymdp(InferenceConfig(policy_len=policy_len, dtype="float64"))

    def step(obs: np.ndarray) -> np.ndarray:
        agent.infer_states([int(o) for o in obs[0]])
        agent.infer_policies()
        action = agent.sample_action()
        return np.asarray(action).astype(np.int64).reshape(1, -1)

    return step


def measure_latency(model: GenerativeModel, policy_len: int, impl: str, plan: Plan,
                    rng: np.random.Generator) -> dict[str, Any]:
    """One agent's step latency for ``impl`` in ``numba``, ``reference``, ``pymdp``."""
    target = plan.latency_steps
    if impl == "pymdp":
        step = _pymdp_step_fn(model, policy_len)
        if policy_len >= 3:
            target = min(target, plan.pymdp_long_policy_steps)
    else:
        agents = Agents(model, 1, InferenceConfig(policy_len=policy_len), seed=plan.seed,
                        threads=1, backend=impl)  # type: ignore[arg-type]
        step = agents.step
    world = ModelProcess(model, 1, rng)
    times, first = _timed_steps(step, world, target, plan.latency_budget_s,
                                plan.latency_min_steps)
    s = summary(times)
    return {"impl": impl, "target_steps": target, "steps": s["count"],
            "median_us": s["median"] * 1e6, "min_us": s["min"] * 1e6,
            "max_us": s["max"] * 1e6, "p90_us": s["p90"] * 1e6, "first_step_ms": first * 1e3}


# ------------------------------------------------------------------------------------ throughput
def measure_throughput(model: GenerativeModel, policy_len: int, n: int, threads: int,
                       plan: Plan, rng: np.random.Generator) -> tuple[dict[str, Any], Agents]:
    """Agent-steps/s of ``n`` Numba float32 agents on ``threads`` threads (and the agents)."""
    agents = Agents(model, n, InferenceConfig(policy_len=policy_len), seed=plan.seed,
                    threads=threads)
    world = ModelProcess(model, n, rng)
    warm: list[float] = []
    for _ in range(max(1, plan.warmup_steps)):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = agents.step(obs)
        warm.append(time.perf_counter() - t0)
        world.advance(actions)
    est = max(min(warm), 1e-7)
    timed = max(plan.timed_steps, min(1000, int(plan.min_timed_seconds / est)))
    times: list[float] = []
    for _ in range(timed):
        obs = world.observe()
        t0 = time.perf_counter()
        actions = agents.step(obs)
        times.append(time.perf_counter() - t0)
        world.advance(actions)
    s = summary(times)
    row = {"n": n, "threads": threads, "warmup_steps": len(warm), "timed_steps": s["count"],
           "step_s_median": s["median"], "step_s_min": s["min"], "step_s_max": s["max"],
           "steps_per_s_median": n / s["median"], "steps_per_s_min": n / s["max"],
           "steps_per_s_max": n / s["min"]}
    return row, agents


# ------------------------------------------------------------------------------------ step cost
@dataclasses.dataclass(frozen=True)
class Support:
    """How much of the state space an agent's beliefs cover (medians over sampled agents).

    ``states``: entries of q(s) above e^-16 (the kernel's threshold); ``outcome_terms``: non-zero
    joint-outcome probabilities of those states (summed); ``outcomes``: distinct joint outcomes
    they touch (the entropy's length).
    """

    states: float
    outcome_terms: float
    outcomes: float
    sampled_agents: int


def belief_support(agents: Agents, sample: int, rng: np.random.Generator) -> Support:
    """Measure :class:`Support` from the (single-factor) beliefs of up to ``sample`` agents."""
    layout = agents.layout
    q = agents.qs[0]
    rows = np.arange(q.shape[0]) if q.shape[0] <= sample else \
        rng.choice(q.shape[0], size=sample, replace=False)
    po_ptr, po_idx = layout.po_ptr, layout.po_idx
    per_state_terms = np.diff(po_ptr)
    states, terms, outcomes = [], [], []
    for i in rows:
        live = np.flatnonzero(np.asarray(q[i], dtype=np.float64) > EXP_M16)
        states.append(live.size)
        terms.append(int(per_state_terms[live].sum()))
        touched = np.concatenate([po_idx[po_ptr[j]:po_ptr[j + 1]] for j in live]) \
            if live.size else np.zeros(0, dtype=np.int64)
        outcomes.append(np.unique(touched).size)
    return Support(states=float(np.median(states)), outcome_terms=float(np.median(terms)),
                   outcomes=float(np.median(outcomes)), sampled_agents=int(rows.size))


def step_cost(agents_or_layout: Any, support: Support | None,
              config: InferenceConfig | None = None,
              obs_itemsize: int = 8) -> dict[str, Any] | None:
    """FLOPs and bytes of one agent step of the Numba kernel (single-factor models).

    Counted from the model sizes and ``engine/kernels/numba/``'s algorithm; a log, exp or
    comparison counts as one operation (a log costs far more cycles than a multiply, so the
    share of peak is a lower bound on how busy the core is). ``support`` says how many states
    the kernel's e^-16 threshold lets through (``None``: all of them); the predicted beliefs
    of every policy-tree node are assumed to have the posterior's support (deterministic moves
    can only merge states).

    Per step: prior ``B[a] @ q`` from B's row lists (2 per non-zero); posterior
    ``(L + e)(p + e)`` normalised: ``(M + 5) S``; per tree node: utility dot against the
    pulled-back utility ``2 S``, information gain over the ``k`` predicted states that can pass
    e^-16 (their row sums ``2 k``, ambiguity ``2 k``, outcome accumulation
    ``2 * outcome_terms``, entropy ``4 * outcomes``; memo hits are not discounted, so this is
    an upper bound), accumulate G ``2``; internal nodes only: their prediction (sparse B, 2 per
    non-zero) and the scan for states above the cut ``S``; policy posterior ``7 P``; marginal
    action selection ``P + 3 U``.

    Bytes: the per-agent state read and written (q(s) read and written, q(pi) and G written,
    observations read, actions written, previous action read and written, started flag, agent
    id); the shared model tables are assumed to stay in cache. Returns ``None`` for models with
    more than one factor.
    """
    layout = getattr(agents_or_layout, "layout", agents_or_layout)
    if config is None:
        config = getattr(agents_or_layout, "config", InferenceConfig())
    if layout.n_factors != 1:
        return None
    S = int(layout.num_states[0])
    M = layout.n_modalities
    U = int(layout.num_controls[0])
    P = layout.n_policies
    n_nodes = layout.tree.n_nodes
    if bool(layout.B_sparse[0]):
        nnz = np.diff(layout.Bs_ptr[0, :U + 1]).astype(np.float64)
    else:
        nnz = np.full(U, float(S * S))
    if support is None:
        k = float(S)
        terms = float(layout.po_ptr[-1])
        outcomes = float(layout.n_joint_obs)
    else:
        k, terms, outcomes = support.states, support.outcome_terms, support.outcomes
    internal = layout.tree.depth < layout.policy_len - 1
    node_B = float(sum(2.0 * nnz[int(a)] + S
                       for a in layout.tree.action[internal, 0]))
    per_node = {
        "utility": 2.0 * S if config.use_utility else 0.0,
        "candidates_ambiguity": 4.0 * k if config.use_states_info_gain else 0.0,
        "outcome_accumulate": 2.0 * terms if config.use_states_info_gain else 0.0,
        "outcome_entropy": 4.0 * outcomes if config.use_states_info_gain else 0.0,
        "accumulate_G": 2.0,
    }
    flops = {
        "prior": 2.0 * float(nnz.mean()),
        "posterior": float((M + 5) * S),
        "tree_internal_B": node_B,
        **{f"tree_{name}": value * n_nodes for name, value in per_node.items()},
        "policy_posterior": 7.0 * P,
        "action": float(P + 3 * U),
    }
    item = np.dtype(layout.dtype).itemsize
    F = layout.n_factors
    bytes_ = {
        "qs": 2 * S * item, "q_pi_G": 2 * P * item, "obs": M * obs_itemsize,
        "actions": F * 8, "prev_action": 2 * F * 8, "started": 2, "agent_id": 8,
    }
    return {"S": S, "M": M, "U": U, "P": P, "tree_nodes": n_nodes,
            "support": dataclasses.asdict(support) if support is not None else None,
            "flops": flops, "flops_total": float(sum(flops.values())),
            "bytes": bytes_, "bytes_total": int(sum(bytes_.values()))}


# ------------------------------------------------------------------------------------ machine
_MATMUL_CODE = """
import json, sys, time
import numpy as np
n, repeats = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.random((n, n))
b = rng.random((n, n))
a @ b
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""

_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def measure_matmul(n: int, threads: int, repeats: int) -> dict[str, Any]:
    """float64 ``n x n @ n x n`` GFLOP/s with BLAS limited to ``threads`` threads.

    Runs in a child process whose BLAS thread count is set by environment variables (works
    without threadpoolctl, and leaves this process's BLAS pool alone).
    """
    env = dict(os.environ)
    for var in _BLAS_THREAD_VARS:
        env[var] = str(threads)
    out = subprocess.run([sys.executable, "-c", _MATMUL_CODE, str(n), str(repeats)], env=env,
                         capture_output=True, text=True, check=True, timeout=600)
    times = json.loads(out.stdout.strip().splitlines()[-1])
    gflops = [2.0 * n ** 3 / t / 1e9 for t in times]
    return {"n": n, "threads": threads, "repeats": repeats,
            "gflops_median": float(np.median(gflops)), "gflops_max": float(max(gflops)),
            "gflops_min": float(min(gflops))}


@njit(parallel=True, cache=True)
def _parallel_copy(src, dst):  # noqa: ANN001
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def measure_bandwidth(mb: int, threads: int, repeats: int) -> dict[str, Any]:
    """Copy GB/s (bytes read + bytes written, STREAM's convention) of a ``mb`` MiB float64 array.

    Copies with a Numba ``prange`` loop on ``threads`` threads (the kernels' threading), and
    with ``np.copyto`` (one thread) for reference.
    """
    n = mb * 1024 * 1024 // 8
    src = np.ones(n)
    dst = np.zeros(n)
    moved = 2.0 * src.nbytes
    numba.set_num_threads(threads)
    try:
        _parallel_copy(src, dst)
        par = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _parallel_copy(src, dst)
            par.append(moved / (time.perf_counter() - t0) / 1e9)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.copyto(dst, src)
    npy = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        npy.append(moved / (time.perf_counter() - t0) / 1e9)
    return {"mib": mb, "threads": threads, "repeats": repeats,
            "gbps_median": float(np.median(par)), "gbps_max": float(max(par)),
            "numpy_copy_gbps_max": float(max(npy))}


# ------------------------------------------------------------------------------------ memory
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
    return measure_in_child(f"from perf.kernels import _rss_child; _rss_child("
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


# ------------------------------------------------------------------------------------ run
def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__,
                                  "numba": numba.__version__}
    try:
        from importlib.metadata import version

        out["pymdp"] = version("inferactively-pymdp")
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        out["pymdp"] = None
    return out


def _pymdp_available() -> bool:
    try:
        import pymdp.agent  # noqa: F401
    except ImportError:
        return False
    return True


def run(plan: Plan, command: str = "") -> dict[str, Any]:
    """Measure everything ``plan`` asks for; returns the JSON-ready results."""
    rng = np.random.default_rng(plan.seed)
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = tuple(t for t in plan.threads if 1 <= t <= max_threads)
    if threads != plan.threads:
        log(f"threads {plan.threads} limited to {threads} (Numba has {max_threads})")
    use_pymdp = plan.pymdp and _pymdp_available()
    if plan.pymdp and not use_pymdp:
        log("pymdp is not installed: no pymdp figures or ratios")
    results: dict[str, Any] = {
        "benchmark": "kernels", "command": command,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": max_threads,
                    "platform": platform.platform(), "processor": platform.processor(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": _versions(), "git": _git_state(), "plan": dataclasses.asdict(plan),
    }

    # machine peaks
    peak: dict[str, Any] = {"matmul": {}, "bandwidth": {}}
    for t in threads:
        log(f"matmul {plan.matmul_n}^3 float64, {t} BLAS thread(s)")
        peak["matmul"][str(t)] = measure_matmul(plan.matmul_n, t, plan.matmul_repeats)
        log(f"copy {plan.copy_mb} MiB, {t} thread(s)")
        peak["bandwidth"][str(t)] = measure_bandwidth(plan.copy_mb, t, plan.copy_repeats)
    results["peak"] = peak

    # latency
    latency: list[dict[str, Any]] = []
    impls = ["numba", "reference"] + (["pymdp"] if use_pymdp else [])
    pymdp_us: dict[tuple[str, int], float] = {}
    for name in plan.models:
        model = model_by_name(name)
        for L in plan.policy_lens:
            rows = []
            for impl in impls:
                log(f"latency {name} policy_len={L} {impl}")
                with OtherLoad() as load:
                    row = {"model": name, "policy_len": L,
                           **measure_latency(model, L, impl, plan, rng)}
                row["other_load_cores"] = load.cores
                rows.append(row)
            if use_pymdp:
                pymdp_us[(name, L)] = rows[-1]["median_us"]
            for row in rows:
                ref = pymdp_us.get((name, L))
                row["ratio_vs_pymdp"] = ref / row["median_us"] if ref else None
            latency.extend(rows)
    results["latency"] = latency

    # throughput, then step cost from the beliefs of the largest population
    throughput: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    for name in plan.models:
        model = model_by_name(name)
        for L in plan.policy_lens:
            cap = plan.max_agents_long_policy if L >= 3 else max(plan.sizes)
            per_agent_s: dict[int, float] = {}
            last: Agents | None = None
            rows = []
            for n in plan.sizes:
                for t in threads:
                    base = {"model": name, "policy_len": L, "n": n, "threads": t}
                    if n > cap:
                        rows.append({**base, "skipped": f"policy_len {L} capped at {cap} agents"})
                        continue
                    est = per_agent_s.get(t, 0.0) * n * (plan.warmup_steps + plan.timed_steps)
                    if est > plan.row_budget_s:
                        rows.append({**base, "skipped": f"estimated {est:.0f} s > row budget "
                                                        f"{plan.row_budget_s:.0f} s"})
                        log(f"throughput {name} L={L} N={n} threads={t}: skipped ({est:.0f} s)")
                        continue
                    log(f"throughput {name} policy_len={L} N={n} threads={t}")
                    last = None
                    gc.collect()
                    with OtherLoad() as load:
                        row, last = measure_throughput(model, L, n, t, plan, rng)
                    row["other_load_cores"] = load.cores
                    per_agent_s[t] = row["step_s_median"] / n
                    rows.append({"model": name, "policy_len": L, **row})
            cost = None
            if last is not None:
                support = belief_support(last, plan.support_sample_agents, rng)
                cost = step_cost(last, support)
                last = None
                if cost is not None:
                    costs.append({"model": name, "policy_len": L, **cost})
            ref = pymdp_us.get((name, L))
            for row in rows:
                if "skipped" in row:
                    continue
                rate = row["steps_per_s_median"]
                row["pymdp_steps_per_s"] = 1e6 / ref if ref else None
                row["ratio_vs_pymdp"] = rate * ref / 1e6 if ref else None
                if cost is not None:
                    mm = peak["matmul"][str(row["threads"])]["gflops_max"]
                    bw = peak["bandwidth"][str(row["threads"])]["gbps_max"]
                    row["gflops"] = rate * cost["flops_total"] / 1e9
                    row["pct_peak_flops"] = 100.0 * row["gflops"] / mm
                    row["gbps"] = rate * cost["bytes_total"] / 1e9
                    row["pct_peak_bandwidth"] = 100.0 * row["gbps"] / bw
            throughput.extend(rows)
    results["throughput"] = throughput
    results["step_cost"] = costs

    # memory
    memory = []
    for name in plan.models:
        for L in plan.policy_lens:
            log(f"memory {name} policy_len={L}")
            memory.append({"model": name, **memory_per_agent(model_by_name(name), L,
                                                             plan.memory_sample_agents)})
    results["memory"] = memory
    if plan.rss_agents > 0:
        log(f"RSS {plan.rss_model} policy_len={plan.rss_policy_len} N={plan.rss_agents}")
        results["rss"] = {"model": plan.rss_model,
                          **rss_per_agent(plan.rss_model, plan.rss_policy_len, plan.rss_agents,
                                          plan.seed)}
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - _T0
    return results


# ------------------------------------------------------------------------------------ report
def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _si(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}x"


def _us(x: float) -> str:
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def format_report(results: dict[str, Any]) -> str:
    """The human-readable tables of a results dict."""
    out = [f"agentloop kernel benchmark  {results['started']}  host {results['host']}",
           f"command: {results['command']}",
           f"git {results['git'].get('commit')} dirty={results['git'].get('dirty')}  "
           f"cpus={results['machine']['cpu_count']} numba_threads="
           f"{results['machine']['numba_threads']}  load {results['machine']['loadavg_start']}"
           f" -> {results['machine'].get('loadavg_end')}", ""]
    peak = results["peak"]
    out.append("Machine (float64 matmul GFLOP/s, copy GB/s = read+write bytes; max [median])")
    rows = []
    for t in peak["matmul"]:
        mm, bw = peak["matmul"][t], peak["bandwidth"][t]
        rows.append([t, f"{mm['gflops_max']:.1f} [{mm['gflops_median']:.1f}]",
                     f"{bw['gbps_max']:.1f} [{bw['gbps_median']:.1f}]",
                     f"{bw['numpy_copy_gbps_max']:.1f}"])
    out += [_table(["threads", f"matmul {peak['matmul'][t]['n']}^3", "numba copy",
                    "np.copyto (1 thr)"], rows), ""]

    out.append("Step latency, one agent, us: median [min-max] (steps); ratio = pymdp median / "
               "this median")
    rows = []
    for r in results["latency"]:
        note = "" if r["steps"] >= r["target_steps"] else " (time-capped)"
        rows.append([r["model"], str(r["policy_len"]), r["impl"], _us(r["median_us"]),
                     f"{_us(r['min_us'])}-{_us(r['max_us'])}", f"{r['steps']}{note}",
                     _ratio(r["ratio_vs_pymdp"]), f"{r['other_load_cores']:.2f}"])
    out += [_table(["model", "L", "impl", "median", "min-max", "steps", "vs pymdp", "others"],
                   rows), ""]

    out.append("Throughput, numba float32, agent-steps/s: median [min, max]; pymdp = 1/latency; "
               "%peak vs this run's matmul / copy at the same threads")
    rows = []
    for r in results["throughput"]:
        head = [r["model"], str(r["policy_len"]), _si(r["n"]), str(r["threads"])]
        if "skipped" in r:
            rows.append(head + ["skipped: " + r["skipped"], "", "", "", "", "", ""])
            continue
        rows.append(head + [
            f"{_si(r['steps_per_s_median'])} [{_si(r['steps_per_s_min'])}, "
            f"{_si(r['steps_per_s_max'])}]",
            str(r["timed_steps"]), _ratio(r.get("ratio_vs_pymdp")),
            "-" if r.get("gflops") is None else f"{r['gflops']:.2f}",
            "-" if r.get("pct_peak_flops") is None else f"{r['pct_peak_flops']:.1f}%",
            "-" if r.get("pct_peak_bandwidth") is None
            else f"{r['gbps']:.2f} ({r['pct_peak_bandwidth']:.1f}%)",
            f"{r['other_load_cores']:.2f}"])
    out += [_table(["model", "L", "N", "thr", "steps/s", "timed", "vs pymdp", "GFLOP/s",
                    "%peak", "GB/s (%bw)", "others"], rows),
            "others = cores busy with other processes during the row (0 = machine was ours)", ""]

    out.append("Work per agent step (numba kernel; support measured on the largest population "
               "after its run)")
    rows = []
    for c in results["step_cost"]:
        sup = c["support"] or {}
        rows.append([c["model"], str(c["policy_len"]), str(c["S"]), str(c["P"]),
                     str(c["tree_nodes"]), f"{sup.get('states', c['S']):g}",
                     f"{sup.get('outcomes', 0):g}", _si(c["flops_total"]),
                     str(c["bytes_total"])])
    out += [_table(["model", "L", "S", "policies", "nodes", "support", "outcomes", "FLOP",
                    "bytes"], rows), ""]

    out.append("Memory: per-agent arrays (bytes), shared model layout, per-thread scratch")
    rows = [[m["model"], str(m["policy_len"]), f"{m['per_agent_bytes']:.0f}",
             ", ".join(f"{k}={v:.0f}" for k, v in m["per_agent_breakdown"].items()),
             _si(m["shared_model_bytes"]), _si(m["scratch_bytes"])]
            for m in results["memory"]]
    out += [_table(["model", "L", "per agent", "breakdown", "model", "scratch"], rows)]
    rss = results.get("rss")
    if rss:
        out.append(f"RSS {rss['model']} policy_len={rss['policy_len']} N={_si(rss['n'])}: "
                   f"{rss['bytes_per_agent_created']:.0f} B/agent after create "
                   f"({rss['create_s']:.2f} s), {rss['bytes_per_agent_after_step']:.0f} B/agent "
                   f"after the first step ({rss['first_step_s']:.2f} s)")
    out.append(f"\nelapsed {results['elapsed_s']:.0f} s")
    return "\n".join(out)


def default_json_path(quick: bool) -> Path:
    date = datetime.date.today().isoformat()
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"kernels{'-quick' if quick else ''}-{date}-{host}.json"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x)


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m perf.kernels", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="grid-10 only, N up to 10k, fewer repeats (under 2 minutes)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON (default perf/results/kernels-<date>-<host>.json)")
    p.add_argument("--models", help="comma-separated model names (perf.models)")
    p.add_argument("--policy-lens", type=_ints, help="comma-separated policy lengths")
    p.add_argument("--sizes", type=_ints, help="comma-separated population sizes")
    p.add_argument("--threads", type=_ints, help="comma-separated thread counts")
    p.add_argument("--latency-steps", type=int, help="target steps per latency figure")
    p.add_argument("--rss-agents", type=int, help="agents for the RSS measurement (0: skip)")
    p.add_argument("--no-pymdp", action="store_true", help="skip pymdp (no ratios)")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.models:
        changes["models"] = tuple(m for m in args.models.split(",") if m)
        for m in changes["models"]:
            model_by_name(m)                        # fail early on a typo
    for field in ("policy_lens", "sizes", "threads", "latency_steps", "rss_agents"):
        value = getattr(args, field)
        if value is not None:
            changes[field] = value
    if args.no_pymdp:
        changes["pymdp"] = False
    return dataclasses.replace(plan, **changes), args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m perf.kernels", *shown])
    log(f"plan: {plan}")
    results = run(plan, command)
    print(format_report(results))
    path = args.json or default_json_path(args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
