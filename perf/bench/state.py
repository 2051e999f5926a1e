"""What one benchmark run has found so far: figures, raw rows, peers not measured."""

from __future__ import annotations

from typing import Any

from perf.bench.config import BenchConfig
from perf.bench.probes import Probes
from perf.bench.progress import Progress


class RunState:
    """The state of one run: figures, raw rows, peers not measured, and what later stages
    need (which peers run, the machine's peaks, the measured latencies)."""

    def __init__(self, cfg: BenchConfig, probes: Probes, progress: Progress) -> None:
        self.cfg, self.probes, self.progress = cfg, probes, progress
        self.figures: list[dict[str, Any]] = []
        self.not_measured: list[dict[str, str]] = []
        self.raw: dict[str, Any] = {"latency": [], "throughput": [], "held": [],
                                    "step_cost": [], "zoo": [], "jax_setup": {}}
        self.pymdp_ok = False
        self.pymdp1_ok = False
        self.peak: dict[str, Any] = {}
        self.latency_s: dict[tuple[str, int, str], float] = {}

    def skip(self, what: str, reason: str) -> None:
        """Record ``what`` as not measured, and say so."""
        self.not_measured.append({"what": what, "reason": reason})
        self.progress.message(f"{what}: not measured: {reason}")

    def add(self, fig: dict[str, Any]) -> None:
        """Record a figure."""
        self.figures.append(fig)
