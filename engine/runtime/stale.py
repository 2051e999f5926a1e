"""Why agents were stale in a tick (not updated: they kept their last action): the reasons,
their counts, the one classification of a tick's stale flags, and how the status line and the
summaries write them. The definitions: docs/observability.md, section "Stale agents"."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from engine.runtime.degrade import ROTATING_FRACTION, STALE_ACTIONS

#: every reason, in the order reports list them
STALE_REASONS = ("deadline", "worker", "degraded", "forced")
#: the status line's short names of the reasons
SHORT_NAMES = {"deadline": "dl", "worker": "wk", "degraded": "deg", "forced": "frc"}
#: the owner of a part of a population stepped by the master process (or a device)
MASTER = -1


@dataclasses.dataclass(frozen=True)
class StaleCounts:
    """Stale agents by reason, of one tick or summed over ticks (agent-ticks).

    ``deadline``: the tick's deadline passed before the agent's chunk was stepped (on a
    cluster: its shard answered late, or was still busy with a dropped tick); ``worker``: in
    the part of a worker process that died, hung or was still starting (on a cluster: a shard
    lost, restoring or dead), and not taken over by the others; ``degraded``: the
    degradation level left it out (the rotating fraction's other half, every agent at stale
    actions); ``forced``: the caller gave the stale set (``Engine.step(stale=...)``, replay).
    """

    deadline: int = 0
    worker: int = 0
    degraded: int = 0
    forced: int = 0

    @property
    def total(self) -> int:
        """Stale agents for any reason."""
        return self.deadline + self.worker + self.degraded + self.forced

    def as_dict(self) -> dict[str, int]:
        """Every reason's count, in :data:`STALE_REASONS` order."""
        return {reason: int(getattr(self, reason)) for reason in STALE_REASONS}

    def nonzero(self) -> dict[str, int]:
        """The reasons with a non-zero count."""
        return {reason: count for reason, count in self.as_dict().items() if count}

    def __add__(self, other: StaleCounts) -> StaleCounts:
        return StaleCounts(**{r: getattr(self, r) + getattr(other, r) for r in STALE_REASONS})

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> StaleCounts:
        """Counts from :meth:`as_dict` or :meth:`nonzero` output (a missing reason is 0, an
        unknown one is ignored); ValueError for a count that is not a whole number >= 0."""
        counts = {}
        for reason in STALE_REASONS:
            value = doc.get(reason, 0)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"stale_reasons: {reason} must be a whole number >= 0, got "
                                 f"{value!r}"[:120])
            counts[reason] = int(value)
        return StaleCounts(**counts)


def rotated_stale(flags: np.ndarray, chunk: int, tick: int) -> int:
    """Stale agents among ``flags`` (one part of a population, chunked from its start) in the
    chunks the rotating fraction leaves out in ``tick``: chunk ``i`` with ``(i + tick) % 2 ==
    1``."""
    if flags.size == 0:
        return 0
    per_chunk = np.add.reduceat(flags, np.arange(0, flags.size, chunk), dtype=np.int64)
    return int(per_chunk[(tick + 1) % 2::2].sum())


def count_stale(flags: Sequence[np.ndarray], parts: Sequence[Sequence[tuple[int, int, int]]],
                chunks: Sequence[int], tick: int, level: int, failed: Collection[int] = (),
                forced: bool = False) -> StaleCounts:
    """A tick's stale agents by reason, from each population's stale ``flags`` after the tick.

    ``parts[p]`` is how population ``p`` was stepped: ``(lo, hi, owner)``, in chunks of
    ``chunks[p]`` agents from ``lo``, ``owner`` the worker process (or :data:`MASTER`);
    ``failed``: the workers that did not finish the tick (dead, hung, or not started again
    yet). Reasons take precedence in the order forced, degraded, worker, deadline: an agent
    the level left out is ``degraded`` even in a dead worker's part.
    """
    total = sum(int(f.sum()) for f in flags)
    if forced:
        return StaleCounts(forced=total)
    if level >= STALE_ACTIONS:
        return StaleCounts(degraded=total)
    degraded = worker = 0
    for population, population_parts, chunk in zip(flags, parts, chunks, strict=True):
        for lo, hi, owner in population_parts:
            part = population[lo:hi]
            left_out = rotated_stale(part, chunk, tick) if level == ROTATING_FRACTION else 0
            degraded += left_out
            if owner in failed:
                worker += int(part.sum()) - left_out
    return StaleCounts(deadline=total - worker - degraded, worker=worker, degraded=degraded)


def percent(count: int, of: int) -> str:
    """``count`` as a share of ``of`` for the status line: 12%, 8.5%, <0.1%, 0%."""
    if count <= 0 or of <= 0:
        return "0%"
    share = 100.0 * count / of
    if share >= 9.95:
        return f"{share:.0f}%"
    return f"{share:.1f}%" if share >= 0.05 else "<0.1%"


def shares(counts: StaleCounts, of: int, with_share: bool = True, short: bool = True) -> str:
    """The reasons that have any, each with its share of ``of``: ``dl 8.3%, deg 3.7%``;
    without ``with_share`` only the names (``dl, deg``); not ``short``: ``deadline 8.3%``."""
    return ", ".join((SHORT_NAMES[r] if short else r)
                     + (f" {percent(c, of)}" if with_share else "")
                     for r, c in counts.nonzero().items())


def describe(counts: StaleCounts, of: int, form: str = "shares") -> str:
    """The stale share of ``of`` agents (or agent-ticks) and the reasons that have any:
    ``stale 12% (dl 8.3%, deg 3.7%)`` (``form="shares"``), ``stale 12% (dl, deg)``
    (``"names"``) or ``stale 12%`` (``"total"``); ``stale 0%`` when none."""
    text = f"stale {percent(counts.total, of)}"
    if counts.total and form != "total":
        text += f" ({shares(counts, of, form == 'shares')})"
    return text
