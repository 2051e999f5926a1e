"""Placing shard actors on the cluster's nodes (a placement group of one bundle per shard,
spread over the nodes) and taking them down again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.cluster.shard import shard_actor_class
from engine.cluster.sharding import ShardPart
from engine.errors import ClusterError

#: how long start() waits for every shard to be placed and warm (kernels loaded)
START_TIMEOUT_S = 600.0
#: how long close() waits for shards to remove their shared memory before killing them
CLOSE_TIMEOUT_S = 30.0


def reserve_bundles(shards: int, cpus_per_shard: float, n_nodes: int) -> tuple[Any, str]:
    """A placement group of one ``cpus_per_shard`` bundle per shard (not yet placed), and its
    strategy: ``STRICT_SPREAD`` with at least as many nodes as shards, else ``SPREAD``."""
    from ray.util.placement_group import placement_group
    strategy = "STRICT_SPREAD" if n_nodes >= shards else "SPREAD"
    return placement_group([{"CPU": cpus_per_shard}] * shards, strategy=strategy), strategy


def wait_until_placed(ray: Any, pg: Any, shards: int, cpus_per_shard: float, strategy: str,
                      n_nodes: int) -> None:
    """Wait for the placement group ``pg``; a ClusterError after ``START_TIMEOUT_S``."""
    ready, _ = ray.wait([pg.ready()], timeout=START_TIMEOUT_S)
    if not ready:
        raise ClusterError(f"ClusterEngine: could not place {shards} shards of "
                           f"{cpus_per_shard} CPU ({strategy}) on {n_nodes} nodes "
                           f"in {START_TIMEOUT_S:.0f} s")


def start_shard_actors(pg: Any, parts: list[list[ShardPart]], engine_kwargs: dict[str, Any],
                       *, cpus_per_shard: float, max_restarts: int,
                       runtime_env: Mapping[str, Any] | None) -> list[Any]:
    """One shard actor per bundle of ``pg``, actor ``s`` hosting ``parts[s]`` (its engine
    not built yet: ``start``)."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    actor_class = shard_actor_class()
    options: dict[str, Any] = {"num_cpus": cpus_per_shard,
                               "max_restarts": max_restarts, "max_task_retries": 0}
    if runtime_env:
        options["runtime_env"] = runtime_env
    return [
        actor_class.options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=s),
            **options).remote(parts[s], engine_kwargs)
        for s in range(len(parts))]


def stop_shards(ray: Any, actors: list[Any], pg: Any) -> None:
    """Ask every shard to close (each removes its shared memory), kill them, and remove the
    placement group."""
    if actors and ray.is_initialized():
        closing = [a.close.remote() for a in actors]
        try:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
    if pg is not None and ray.is_initialized():
        from ray.util.placement_group import remove_placement_group
        remove_placement_group(pg)
