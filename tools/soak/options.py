"""What a soak runs and the bounds it checks (:class:`SoakOptions`)."""

from __future__ import annotations

import dataclasses
import math

WORLD_NAMES = ("grid", "foraging")
DEFAULT_DURATION_S = 3600.0
DEFAULT_AGENTS = 100_000
#: a sample at most this much before the end of the warm-up counts as after it (float slack)
WARMUP_SLACK_S = 1e-3


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    """What a soak runs and the bounds it checks (see the module docstring)."""

    world: str = "grid"
    size: int | None = None
    agents: int = DEFAULT_AGENTS
    hz: float = 10.0
    duration_s: float = DEFAULT_DURATION_S
    workers: int = 2
    policy_len: int = 1
    seed: int = 0
    sample_every_s: float = 10.0
    warmup_s: float | None = None
    max_rss_growth_pct: float = 1.0
    max_stale_pct: float = 10.0
    max_missed_pct: float = 2.0
    log: str | None = None
    overwrite_log: bool = False
    log_max_bytes: int | None = None
    log_rotate: int | None = None
    snapshot_every: int = 100

    @property
    def n_ticks(self) -> int:
        """Ticks in the whole run (``duration_s * hz``, at least 1)."""
        return max(1, math.ceil(self.duration_s * self.hz - 1e-9))

    @property
    def ticks_per_sample(self) -> int:
        """Ticks between two samples (``sample_every_s * hz``, at least 1)."""
        return max(1, round(self.sample_every_s * self.hz))

    @property
    def warmup(self) -> float:
        """The warm-up in seconds: ``warmup_s``, or 10% of the duration and at least one
        sample interval."""
        if self.warmup_s is not None:
            return self.warmup_s
        return max(0.1 * self.duration_s, self.sample_every_s)

    @property
    def world_size(self) -> int:
        """The world's side: ``size``, or the world's default (5 foraging, 10 grid)."""
        if self.size is not None:
            return self.size
        return 5 if self.world == "foraging" else 10

    def problem(self) -> str | None:
        """Why these options cannot run (one sentence), or None."""
        finite = (self.hz, self.duration_s, self.sample_every_s, self.max_rss_growth_pct)
        if self.world not in WORLD_NAMES:
            return f"unknown world {self.world!r}; choose from {', '.join(WORLD_NAMES)}"
        if self.size is not None and self.size < 2:
            return f"--size must be at least 2, got {self.size}"
        if self.agents < 1:
            return f"--agents must be at least 1, got {self.agents}"
        if self.workers < 0:
            return f"--workers must be 0 or more, got {self.workers}"
        if self.policy_len < 1:
            return f"--policy-len must be at least 1, got {self.policy_len}"
        if self.seed < 0:
            return f"--seed must be 0 or more, got {self.seed}"
        if not all(math.isfinite(v) for v in finite):
            return "--hz, --duration, --sample-every and --max-rss-growth must be finite"
        if self.hz <= 0 or self.duration_s <= 0 or self.sample_every_s <= 0:
            return "--hz, --duration and --sample-every must be above 0"
        if self.max_rss_growth_pct < 0:
            return f"--max-rss-growth must be 0 or more, got {self.max_rss_growth_pct:g}"
        for flag, value in (("--max-stale", self.max_stale_pct),
                            ("--max-missed", self.max_missed_pct)):
            if not (math.isfinite(value) and 0 <= value <= 100):
                return f"{flag} must be a percentage from 0 to 100, got {value:g}"
        if self.warmup_s is not None and not (math.isfinite(self.warmup_s)
                                              and self.warmup_s >= 0):
            return f"--warmup must be a finite number of seconds >= 0, got {self.warmup_s:g}"
        per = self.ticks_per_sample
        first_after = per * max(1, math.ceil(self.warmup * self.hz / per - 1e-9))
        if self.n_ticks <= first_after:
            return (f"--duration {self.duration_s:g} leaves no sample after the warm-up "
                    f"to compare with: the first sample after a {self.warmup:g} s warm-up is "
                    f"at {first_after / self.hz:g} s, so the run must be longer than that")
        return None
