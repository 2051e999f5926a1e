"""What a benchmark run measures (:class:`BenchConfig`), the implementations it compares and
where it writes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

SCHEMA = "agentloop-bench/1"
PERF_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PERF_DIR.parent
README_MD = REPO_ROOT / "README.md"
RESULTS_DIR = PERF_DIR / "results"
PLOTS_DIR = RESULTS_DIR / "plots"
RESULTS_MD = PERF_DIR / "RESULTS.md"
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"
#: ``--compare`` flags a figure that got worse by more than this fraction.
REGRESSION_THRESHOLD = 0.10
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2

#: Implementation slugs (``impl`` of a figure) and their display names.
AGENTLOOP, REFERENCE, PYMDP, PYMDP1 = "agentloop", "reference", "pymdp-0.0.7.1", "pymdp-1.x"
#: agentloop's ``Agents`` on every thread, and pymdp 1.x's functional kernels under
#: ``jax.jit(jax.vmap(...))`` with one shared model (the zoo's throughput figures).
AGENTLOOP_MT, PYMDP1_VMAP = "agentloop-mt", "pymdp-1.x-vmap"
#: agentloop's ``Agents`` on every thread in its pymdp 1.x mode (``InferenceConfig.pymdp1``:
#: the information gain summed per modality), held against the pymdp 1.x peers.
AGENTLOOP_MT1 = "agentloop-mt-pymdp1"
IMPL_NAMES = {AGENTLOOP: "agentloop (Numba, 1 thread)", REFERENCE: "agentloop NumPy reference",
              PYMDP: "pymdp 0.0.7.1", PYMDP1: "pymdp 1.x (JAX)", "engine-w0": "engine w=0",
              "engine-w1": "engine w=1", "engine-w2": "engine w=2",
              AGENTLOOP_MT: "agentloop Agents (Numba, all threads)",
              PYMDP1_VMAP: "pymdp 1.x jit(vmap), shared model",
              AGENTLOOP_MT1: "agentloop Agents, pymdp 1.x mode (Numba, all threads)"}
#: The step's settings every implementation of the zoo runs with, agentloop (both modes) and
#: the pymdp 1.x child alike (pymdp 0.0.7.1's defaults; deterministic, so no sampling noise).
#: The pymdp 1.x mode runs all ``num_iter`` sweeps, as pymdp 1.x does.
STEP_PARAMS: dict[str, object] = {"gamma": 16.0, "alpha": 16.0, "num_iter": 10,
                                  "sampling_mode": "marginal",
                                  "action_selection": "deterministic"}
#: The stages of a run, in order (``--stages`` picks some; peers and machine always run).
STAGES = ("latency", "throughput", "zoo", "held", "memory", "quantization")
#: Every model of the zoo (perf.models.ZOO; a test keeps the two equal).
ZOO_MODELS = ("grid-10", "grid-20", "dense-grid-10", "dense-grid-20", "tmaze", "multi-3x3",
              "multi-modal-4", "epistemic-chain", "world-grid", "world-foraging")
#: The policy lengths of each zoo model (perf.models.policy_lens_of; a test keeps them equal).
ZOO_POLICY_LENS = {"epistemic-chain": (4,)}
ZOO_DEFAULT_LENS = (1, 3)
HELD_MODEL = "grid-10"          # perf.engine.held_rate / startup / memory_per_agent use grid-10


def engine_impl(workers: int) -> str:
    """The slug of the engine with ``workers`` worker processes."""
    return f"engine-w{workers}"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What one run measures and how long each measurement may take."""

    repeats: int = 3
    latency_models: tuple[str, ...] = ("grid-5", "grid-10", "grid-20", "multi-3x3")
    policy_lens: tuple[int, ...] = (1, 3)
    latency_steps: int = 300
    latency_min_steps: int = 3
    latency_budget_s: float = 1.0               # per implementation and repeat
    throughput_models: tuple[str, ...] = ("grid-10",)
    sizes: tuple[int, ...] = (1, 100, 10_000, 100_000, 1_000_000)
    workers: tuple[int, ...] = (0, 1, 2)
    max_agents_long_policy: int = 100_000       # policy_len >= 3 throughput cap
    reference_max_agents: int = 100
    warmup_steps: int = 3
    timed_steps: int = 3                        # at least; small populations take more
    max_timed_steps: int = 200
    min_timed_seconds: float = 0.3
    row_budget_s: float = 60.0                  # a throughput row estimated longer is skipped
    jax_memory_bytes: float = 12e9              # pymdp 1.x batches estimated larger skipped
    held_hz: tuple[float, ...] = (10.0, 30.0, 60.0)
    held_policy_len: int = 1
    held_ticks: int = 50
    held_start: int = 1000
    held_growth: int = 2
    held_limit: int = 1_048_576
    held_tolerance: float = 0.125               # bisect to within this fraction of the answer
    startup_agents: int = 1_000_000
    startup_workers: int = 2
    startup_repeats: int = 2
    memory_agents: int = 100_000                # engine shared-memory arrays
    rss_agents: int = 1_000_000                 # in-process RSS growth
    pymdp_agents: int = 30                      # pymdp 0.0.7.1 agents for its RSS / create time
    zoo_models: tuple[str, ...] = ZOO_MODELS
    zoo_policy_lens: tuple[int, ...] | None = None  # None: each zoo model's own
    zoo_agents: int = 10_000
    zoo_agents_long: int = 1_000                # at policy_len >= 3
    zoo_batched_agent: bool = True              # pymdp 1.x Agent(batch_size=N) too, if it fits
    zoo_pymdp1_mode: bool = True                # agentloop's pymdp 1.x mode, 2+ modalities
    quant_cases: tuple[str, ...] = ("grid-10", "random-a", "random-b")
    quant_agents: int = 200
    quant_ticks: int = 300
    quant_timing_agents: int = 20_000
    matmul_n: int = 2000
    matmul_repeats: int = 3
    copy_mb: int = 256
    copy_repeats: int = 3
    stages: tuple[str, ...] = STAGES
    pymdp: bool = True
    pymdp1: bool = True
    install_pymdp1: bool = True
    seed: int = 0


FULL = BenchConfig()
#: ``--quick``: grid-10 at policy_len 1 only, N up to 1,000 (10,000 for the engine), the zoo's
#: dense-grid-10 at policy_len 1 with 1,000 agents, one shorter held-rate search per rate,
#: smaller machine probes; about 2 minutes.
QUICK = BenchConfig(
    repeats=2, latency_models=("grid-10",), policy_lens=(1,), latency_steps=200,
    zoo_models=("dense-grid-10",), zoo_policy_lens=(1,), zoo_agents=1000, zoo_agents_long=100,
    zoo_batched_agent=False,
    latency_budget_s=0.4, sizes=(1, 100, 1000, 10_000), min_timed_seconds=0.1,
    row_budget_s=15.0, jax_memory_bytes=2e9, held_ticks=15, held_start=4000, held_growth=4,
    held_limit=262_144, held_tolerance=1.0, startup_agents=100_000, startup_repeats=1,
    memory_agents=10_000, rss_agents=100_000, pymdp_agents=10, quant_cases=("grid-10",),
    quant_agents=50, quant_ticks=50, quant_timing_agents=5000, matmul_n=800, matmul_repeats=2,
    copy_mb=64, copy_repeats=2,
)


def zoo_pairs(cfg: BenchConfig) -> list[tuple[str, int]]:
    """The (model, policy_len) pairs of the zoo stage: each zoo model at ``zoo_policy_lens``,
    or at its own policy lengths."""
    return [(m, L) for m in cfg.zoo_models
            for L in (cfg.zoo_policy_lens or ZOO_POLICY_LENS.get(m, ZOO_DEFAULT_LENS))]


def reference_pairs(cfg: BenchConfig) -> list[tuple[str, int]]:
    """The pairs whose latency includes agentloop's NumPy reference backend: every latency
    model at every policy length, and those the throughput, held-rate and start-up ratios
    need."""
    pairs = [(m, L) for m in cfg.latency_models for L in cfg.policy_lens]
    pairs += [(m, L) for m in cfg.throughput_models for L in cfg.policy_lens]
    pairs.append((HELD_MODEL, cfg.held_policy_len))
    return list(dict.fromkeys(pairs))


def latency_pairs(cfg: BenchConfig) -> list[tuple[str, int]]:
    """The (model, policy_len) pairs whose latency is measured: :func:`reference_pairs`, then
    the zoo's pairs when the zoo stage runs (their pymdp 0.0.7.1 rate is ``1 / latency``)."""
    pairs = reference_pairs(cfg)
    if "zoo" in cfg.stages:
        pairs += zoo_pairs(cfg)
    return list(dict.fromkeys(pairs))


def count_units(cfg: BenchConfig) -> int:
    """How many progress units :func:`run` will count for ``cfg`` (one per measurement)."""
    on = set(cfg.stages)
    lat = len(latency_pairs(cfg)) * cfg.repeats if "latency" in on else 0
    thr = len(cfg.throughput_models) * len(cfg.policy_lens) * len(cfg.sizes) \
        if "throughput" in on else 0
    thr += len(zoo_pairs(cfg)) if "zoo" in on else 0
    threads = len({1, min(2, os.cpu_count() or 1)})
    return (1 + threads + lat + thr + (len(cfg.held_hz) if "held" in on else 0)
            + (3 if "memory" in on else 0)
            + (len(cfg.quant_cases) if "quantization" in on else 0))
