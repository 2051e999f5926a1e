"""What a soak records: a :class:`Sample` per interval, the :class:`Closing` state after the
engine closed, and the :class:`SoakReport`."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Sample:
    """One look at the run, taken between two ticks. Bytes are bytes; times in the interval
    since the previous sample (``None`` for the first sample, taken before the first tick)."""

    elapsed_s: float
    ticks: int
    rss_master: int
    rss_workers: tuple[int, ...]
    fds_master: int
    fds_workers: tuple[int, ...]
    shm_entries: int
    shm_bytes: int
    shm_free: int
    tick_ms_p50: float | None = None
    tick_ms_p99: float | None = None
    missed: int = 0
    dropped_slots: int = 0
    level_counts: tuple[int, ...] = ()
    respawns: int = 0

    @property
    def rss_total(self) -> int:
        """RSS of the master plus every worker, in bytes."""
        return self.rss_master + sum(self.rss_workers)

    @property
    def fds_total(self) -> int:
        """Open file descriptors of the master plus every worker."""
        return self.fds_master + sum(self.fds_workers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, totals included."""
        out = dataclasses.asdict(self)
        out["rss_total"] = self.rss_total
        out["fds_total"] = self.fds_total
        return out


@dataclasses.dataclass(frozen=True)
class Closing:
    """What is left once the engine (and the tick log) closed."""

    shm_left: tuple[str, ...]
    workers_alive: tuple[int, ...]
    fds_master_before: int
    fds_master_after: int


@dataclasses.dataclass
class SoakReport:
    """A soak's samples, verdict, failures (one sentence each) and summary figures."""

    options: dict[str, Any]
    run_id: str
    samples: list[Sample]
    passed: bool
    failures: list[str]
    summary: dict[str, Any]
    interrupted: bool = False
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (samples with their totals)."""
        return {"passed": self.passed, "failures": list(self.failures),
                "interrupted": self.interrupted, "signal": self.signal,
                "run_id": self.run_id, "options": dict(self.options),
                "summary": dict(self.summary),
                "samples": [s.to_dict() for s in self.samples]}

    def to_json(self) -> bytes:
        """The report as indented JSON (orjson)."""
        import orjson

        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2
                            | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
