"""One way to build an engine: on this machine, or spread over a Ray cluster."""

from __future__ import annotations

from typing import Any

from engine.cluster.coordinator import ClusterEngine
from engine.errors import ConfigError
from engine.model.generative_model import GenerativeModel
from engine.runtime.engine import Engine


def make_engine(model: GenerativeModel | None = None, n_agents: int = 0, *,
                cluster: str | None = None, workers: int = 2, shards: int | None = None,
                **kwargs: Any) -> Engine | ClusterEngine:
    """An ``Engine`` (``cluster=None``) or a ``ClusterEngine`` on the Ray cluster at
    ``cluster`` (``workers`` becomes each shard's ``workers_per_shard``; ``"local"`` starts a
    local Ray). Other keywords go to the chosen class."""
    if cluster is None:
        if shards is not None:
            raise ConfigError("make_engine: shards needs a cluster address")
        return Engine(model, n_agents, workers=workers, **kwargs)
    address = None if cluster == "local" else cluster
    return ClusterEngine(model, n_agents, shards=shards, address=address,
                         workers_per_shard=workers, **kwargs)
