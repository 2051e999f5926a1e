"""What a kernel benchmark run measures (:class:`Plan`), where it writes, and its progress log."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
REPO_ROOT = Path(__file__).resolve().parents[2]

START_TIME = time.perf_counter()


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since start."""
    print(f"[{time.perf_counter() - START_TIME:7.1f}s] {message}", file=sys.stderr, flush=True)


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

