"""How agents are divided between shards: contiguous slices of each population."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from engine.errors import ConfigError
from engine.model.config import InferenceConfig
from engine.runtime.population import Population


def shard_bounds(n_agents: int, shards: int, chunk: int) -> list[tuple[int, int]]:
    """Contiguous ``(lo, hi)`` slices of ``n_agents`` for ``shards`` shards: even splits, moved
    to multiples of ``2 * chunk`` when every shard still gets agents (so the rotating-fraction
    level, which alternates chunks by their parity within a slice, updates the same agents as a
    single in-process engine), else plain even splits."""
    if shards < 1 or n_agents < shards:
        raise ConfigError(f"ClusterEngine: need 1 <= shards <= n_agents, got shards={shards}, "
                          f"n_agents={n_agents}")
    even = np.linspace(0, n_agents, shards + 1)
    step = 2 * chunk
    aligned = np.minimum(np.round(even / step) * step, n_agents).astype(int)
    aligned[-1] = n_agents
    edges = aligned if np.all(np.diff(aligned) > 0) else even.astype(int)
    return [(int(edges[s]), int(edges[s + 1])) for s in range(shards)]


def population_bounds(n_agents: int, shards: int, chunk: int) -> list[tuple[int, int]]:
    """One population's slices over ``shards`` shards: :func:`shard_bounds`, or, for a
    population smaller than the shard count, one agent on each of the first shards (the
    others host none of it)."""
    if n_agents >= shards:
        return shard_bounds(n_agents, shards, chunk)
    return [(min(s, n_agents), min(s + 1, n_agents)) for s in range(shards)]


@dataclasses.dataclass(frozen=True)
class ShardPart:
    """A shard's slice ``lo..hi`` of one population (whose first agent has global id
    ``first_id``), and how that population is configured."""

    name: str
    lo: int
    hi: int
    first_id: int
    config: InferenceConfig | None
    backend: str | None



def shard_parts(populations: Sequence[Population], slices: Sequence[tuple[int, int]],
                first_ids: Sequence[int]) -> list[ShardPart]:
    """One shard's parts: its slice ``slices[i]`` of each population ``i``."""
    return [ShardPart(p.name, lo, hi, first, p.config, p.backend)
            for p, (lo, hi), first in zip(populations, slices, first_ids, strict=True)]


def shard_slices(populations: Sequence[Population], shards: int,
                 chunk: int) -> list[list[tuple[int, int]]]:
    """Each shard's ``(lo, hi)`` slice of each population (``[shard][population]``)."""
    per_population = [population_bounds(int(p.n_agents), shards, chunk) for p in populations]
    return [[bounds[s] for bounds in per_population] for s in range(shards)]
