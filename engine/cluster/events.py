"""What the coordinator reports and holds: each shard's part of a tick, shard failures and
recoveries, and the per-population arrays a tick recorder reads."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ShardTick:
    """One shard's part of the last tick: ``status`` is ``ok``, ``late`` (dropped at the
    deadline), ``busy`` (not sent: a dropped call still runs), ``failed`` (the actor died during
    the tick), ``restoring`` or ``dead``; ``hop_s`` is the call's round trip less the time the
    shard spent in it."""

    shard: int
    status: str
    wall_s: float | None
    hop_s: float | None


@dataclasses.dataclass(frozen=True)
class ShardEvent:
    """A shard's failure or recovery: ``kind`` is ``down``, ``restored`` or ``dead``."""

    tick: int
    shard: int
    kind: str
    detail: str = ""


class CoordinatorState:
    """The arrays a tick recorder reads: last observations, held actions, stale flags."""

    def __init__(self, n: int, n_modalities: int, n_factors: int) -> None:
        self.obs = np.zeros((n, n_modalities), dtype=np.int64)
        self.actions = np.zeros((n, n_factors), dtype=np.int64)
        self.stale = np.zeros(n, dtype=np.uint8)


