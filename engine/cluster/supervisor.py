"""The coordinator's calls to its shards and their health: which shards get a tick, which are
late, busy with a dropped tick, restoring or dead; their belief checkpoints; restoring a
restarted shard."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from engine.cluster.events import CoordinatorState, ShardEvent
from engine.cluster.ray_connection import _ray
from engine.errors import ShardNotRestored

log = logging.getLogger("agentloop.cluster")

#: consecutive failed restores after which a shard is given up as dead
MAX_RESTORE_FAILURES = 5


def is_shard_lost(exc: BaseException) -> bool:
    """Whether ``exc`` from a shard call means the shard was lost (not a bug to raise)."""
    ray = _ray()
    errors = ray.exceptions
    lost = (errors.RayActorError, errors.ObjectLostError)
    if isinstance(exc, lost):
        return True
    return isinstance(exc, errors.RayTaskError) and isinstance(
        getattr(exc, "cause", None), ShardNotRestored)


class ShardSupervisor:
    """Sends each tick to the shards that can take it and tracks each shard's health:
    ``status[s]`` is ``ok``, ``restoring`` or ``dead``; ``late[s]`` holds its dropped calls
    still running (the shard is busy until they finish). Keeps each shard's last checkpoint
    on the coordinator's node and restores a lost shard from it; ``events`` and ``restarts``
    record what happened."""

    def __init__(self) -> None:
        self.events: list[ShardEvent] = []
        self.restarts = 0
        self.status: list[str] = []

    def attach(self, actors: list[Any], states: list[CoordinatorState],
               slices: list[list[tuple[int, int]]], model_refs: list[Any]) -> None:
        """Watch the shards of a started engine: ``actors[s]`` hosts ``slices[s]`` (one
        ``(lo, hi)`` per population) of the coordinator's ``states``; a restarted shard is
        rebuilt from ``model_refs``."""
        shards = len(actors)
        self.actors = actors
        self.model_refs = model_refs
        self.states = states
        self.slices = slices
        self.status = ["ok"] * shards
        #: the tick each shard must discard with its next call (its result was dropped)
        self.discard: list[int | None] = [None] * shards
        self.epoch = [0] * shards
        self.late: list[list[tuple[Any, int]]] = [[] for _ in range(shards)]
        self.restore: list[tuple[Any, int] | None] = [None] * shards
        self.restore_failures = [0] * shards
        self.checkpoints: list[tuple[Any, int] | None] = [None] * shards
        self.pending_checkpoints: list[tuple[Any, int, int] | None] = [None] * shards
        self.resync_due = False
        self.resync_refs: dict[int, Any] = {}
        self.drain: list[Any] = []            # calls of a lost shard: read, then dropped

    def release(self) -> None:
        """Drop every reference to the shards and their objects (the engine closed)."""
        for name in ("checkpoints", "pending_checkpoints", "late", "restore", "resync_refs",
                     "drain", "actors", "states", "slices", "model_refs"):
            self.__dict__.pop(name, None)

    def sendable(self, s: int) -> bool:
        """Whether shard ``s`` can take a tick: up, and not still running a dropped one."""
        return self.status[s] == "ok" and not self.late[s]

    def call(self, s: int, method: str, *args: Any) -> Any:
        """Call ``method`` of shard ``s`` with ``args`` and the tick it must discard."""
        ref = getattr(self.actors[s], method).remote(*args, self.discard[s])
        self.discard[s] = None
        return ref

    def send_tick(self, parts: list[np.ndarray], tick: int, deadline: float | None,
                  hop: list[float], level: int, checkpoint: bool, resync: bool
                  ) -> tuple[dict[Any, int], dict[int, float]]:
        """Send tick ``tick`` to every shard that can take it, each with its own rows of each
        population's observations ``parts`` and the budget left until ``deadline`` less its
        round trip ``hop[s]``; with ``checkpoint`` / ``resync`` keep each shard's state before
        the tick as its checkpoint / resync point. Returns the calls (ref -> shard) and when
        each shard's call was sent."""
        sent: dict[Any, int] = {}
        send_time: dict[int, float] = {}
        for s, actor in enumerate(self.actors):
            if not self.sendable(s):
                continue                       # down, or still busy with a dropped tick
            shard_budget = None
            if deadline is not None:
                shard_budget = max(0.0, deadline - time.monotonic() - hop[s])
            rows = [part[lo:hi]                # each shard is sent its own rows only
                    for part, (lo, hi) in zip(parts, self.slices[s], strict=True)]
            result_ref, state_ref = actor.step.options(num_returns=2).remote(
                rows, tick, shard_budget, level, self.discard[s], checkpoint or resync)
            self.discard[s] = None
            sent[result_ref] = s
            send_time[s] = time.monotonic()
            if checkpoint:
                self.pending_checkpoints[s] = (state_ref, tick, self.epoch[s])
            if resync:
                self.resync_refs[s] = state_ref
        return sent, send_time

    def outcome(self, ray: Any, s: int, arrived: dict[int, tuple[Any, float]],
                sent: dict[Any, int], send_time: dict[int, float], tick: int
                ) -> tuple[str, dict[str, Any] | None]:
        """Shard ``s``'s part of tick ``tick``, given the calls ``sent`` and those that
        ``arrived`` by the deadline: ``ok`` and its result, or a status and None: ``failed``
        (lost during the tick: restoring it), ``late`` (sent, no answer by the deadline: the
        call is dropped and the tick discarded), ``busy`` (not sent: a dropped call still
        runs), ``restoring`` or ``dead``."""
        if s in arrived:
            try:
                return "ok", ray.get(arrived[s][0])
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_shard_lost(exc):
                    raise
                self.on_failure(s, self.epoch[s], exc, tick)
                return "failed", None
        if self.status[s] == "ok" and s not in send_time:
            return "busy", None
        if self.status[s] == "ok":
            self.late[s].append((next(r for r, shard in sent.items() if shard == s),
                                 self.epoch[s]))
            self.discard[s] = tick
            return "late", None
        return self.status[s], None

    def take_resync_refs(self) -> dict[int, Any]:
        """The shards' states before the tick after a restore (shard -> ref); cleared."""
        refs = self.resync_refs
        self.resync_refs = {}
        return refs

    def on_failure(self, s: int, epoch: int, exc: BaseException, tick: int) -> None:
        """Shard ``s`` lost (a call of ``epoch`` failed): restore it from its checkpoint."""
        if epoch != self.epoch[s] or self.status[s] != "ok":
            return
        self.epoch[s] += 1
        self.restarts += 1
        self.status[s] = "restoring"
        self.drain.extend(ref for ref, _ in self.late[s])
        self.late[s] = []
        self.discard[s] = None
        self.pending_checkpoints[s] = None
        self.events.append(ShardEvent(tick, s, "down", type(exc).__name__))
        log.warning("shard %d lost at tick %d (%s); restoring it from its last checkpoint",
                    s, tick, type(exc).__name__)
        self._submit_restore(s)

    def _submit_restore(self, s: int) -> None:
        checkpoint = self.checkpoints[s]
        arrays_ref, tick = (None, 0) if checkpoint is None else checkpoint
        last = [np.array(state.actions[lo:hi])
                for state, (lo, hi) in zip(self.states, self.slices[s], strict=True)]
        # the checkpoint is the state before tick ``tick``; the agents resume at the
        # coordinator's current tick
        ref = self.actors[s].restore.remote(self.model_refs, arrays_ref, tick, last)
        self.restore[s] = (ref, self.epoch[s])

    def poll(self, tick: int) -> None:
        """Between ticks: check late calls for failures, finish restores, keep checkpoints."""
        ray = _ray()
        if self.drain:
            ready, self.drain = ray.wait(self.drain, num_returns=len(self.drain), timeout=0)
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception:  # noqa: BLE001, S110 - the failure was handled already
                    pass
        for s in range(len(self.status)):
            self._poll_late(ray, s, tick)
            self._poll_checkpoint(ray, s)
            self._poll_restore(ray, s, tick)

    def _poll_late(self, ray: Any, s: int, tick: int) -> None:
        if not self.late[s]:
            return
        refs = [ref for ref, _ in self.late[s]]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        finished = [item for item in self.late[s] if item[0] in done]
        self.late[s] = [item for item in self.late[s] if item[0] not in done]
        for ref, epoch in finished:     # the results are dropped; only failures count
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_shard_lost(exc):
                    raise
                self.on_failure(s, epoch, exc, tick)

    def _poll_checkpoint(self, ray: Any, s: int) -> None:
        pending = self.pending_checkpoints[s]
        if pending is None:
            return
        ref, tick, epoch = pending
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return
        self.pending_checkpoints[s] = None
        try:
            arrays = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the step call reports it
            if not is_shard_lost(exc):
                raise
        else:
            if epoch == self.epoch[s] and arrays is not None:
                # fetched to this node and put back: survives the shard's node
                self.checkpoints[s] = (ray.put(arrays), tick)

    def _poll_restore(self, ray: Any, s: int, tick: int) -> None:
        restore = self.restore[s]
        if self.status[s] != "restoring" or restore is None:
            return
        ref, _ = restore
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return
        try:
            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_shard_lost(exc):
                raise
            self.restore_failures[s] += 1
            if self.restore_failures[s] >= MAX_RESTORE_FAILURES:
                self.status[s] = "dead"
                self.restore[s] = None
                self.events.append(ShardEvent(tick, s, "dead", type(exc).__name__))
                log.error("shard %d is dead at tick %d: %d restores failed (%s)", s, tick,
                          MAX_RESTORE_FAILURES, type(exc).__name__)
            else:
                self._submit_restore(s)
            return
        self.restore_failures[s] = 0
        self.restore[s] = None
        self.status[s] = "ok"
        self.resync_due = True
        self.events.append(ShardEvent(tick, s, "restored"))
        log.info("shard %d restored at tick %d", s, tick)

