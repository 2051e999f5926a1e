"""``agentloop diff``: stream two tick logs in step and name the first difference.

Header fields that decide the run, missing ticks, observations, level, stale agents and
actions are compared; wall times, durations and timings are expected to differ and are
ignored, as are belief snapshots.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from engine.ticklog.schema import TickRecord

HEADER_FIELDS = ("n_agents", "seed", "model_hash", "config", "world")
"""Header fields that decide a run: logs that differ in them differ (checked by diff)."""

_Found = tuple[str, "int | None", Any, Any]
"""(field, first differing agent or None, value in A, value in B)."""


def _first_key_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any]:
    """The first (sorted) key path where two JSON-like values differ, and the two values."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b or a[key] != b[key]:
                return _first_key_difference(a.get(key, "<absent>"), b.get(key, "<absent>"),
                                             f"{prefix}.{key}")
    return prefix, a, b


def _row(a: np.ndarray, i: int) -> list[int]:
    return [int(v) for v in a[i]]


def _compare_arrays(name: str, a: np.ndarray, b: np.ndarray) -> _Found | None:
    """(field, agent, value in A, value in B) of the first difference of two (n, k) arrays."""
    import numpy as np

    if a.shape != b.shape:
        what = "agent count" if a.shape[0] != b.shape[0] else f"{name} shape"
        return what, None, list(a.shape), list(b.shape)
    rows = np.flatnonzero((a != b).any(axis=1)) if a.size else ()
    if len(rows) == 0:
        return None
    i = int(rows[0])
    return name, i, _row(a, i), _row(b, i)


def _compare_ticks(ra: TickRecord, rb: TickRecord) -> _Found | None:
    """The first difference of two records of the same tick (timings and times ignored)."""
    import numpy as np

    found = _compare_arrays("observations", ra.observations, rb.observations)
    if found is not None:
        return found
    if ra.level != rb.level:
        return "level", None, ra.level, rb.level
    sa, sb = np.unique(ra.stale_agents), np.unique(rb.stale_agents)
    if sa.shape != sb.shape or (sa != sb).any():
        agent = int(np.setxor1d(sa, sb)[0])
        return "stale agents", agent, bool(np.isin(agent, sa)), bool(np.isin(agent, sb))
    return _compare_arrays("actions", ra.actions, rb.actions)


def diff_logs(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]
          ) -> tuple[dict[str, Any] | None, int, dict[str, bool]]:
    """(first difference or None, ticks that agreed, {"a": truncated, "b": truncated})."""
    from engine.ticklog.logset import open_log

    with open_log(path_a) as ra, open_log(path_b) as rb:
        truncated = {"a": bool(ra.truncated), "b": bool(rb.truncated)}
        ha, hb = ra.header.to_dict(), rb.header.to_dict()
        for name in HEADER_FIELDS:
            if ha[name] != hb[name]:
                key, va, vb = _first_key_difference(ha[name], hb[name], name)
                return ({"tick": None, "field": f"header {key}", "agent": None, "a": va,
                         "b": vb}, 0, truncated)
        ita: Iterator[TickRecord] = ra.ticks()
        itb: Iterator[TickRecord] = rb.ticks()
        agreed = 0
        while True:
            xa, xb = next(ita, None), next(itb, None)
            if xa is None and xb is None:
                return None, agreed, truncated
            if xa is None or xb is None or xa.tick != xb.tick:
                ta = None if xa is None else xa.tick
                tb = None if xb is None else xb.tick
                tick = min(t for t in (ta, tb) if t is not None)
                return ({"tick": tick, "field": "missing tick", "agent": None,
                         "a": ta == tick, "b": tb == tick, "next_a": ta, "next_b": tb},
                        agreed, truncated)
            found = _compare_ticks(xa, xb)
            if found is not None:
                what, agent, va, vb = found
                return ({"tick": xa.tick, "field": what, "agent": agent, "a": va, "b": vb},
                        agreed, truncated)
            agreed += 1


def first_difference(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]
                     ) -> dict[str, Any] | None:
    """The first difference between two tick logs, or None when they agree.

    Header fields that decide a run (:data:`HEADER_FIELDS`: n_agents, seed, model_hash,
    config, world) are compared first, then the ticks in step; of one tick, observations, then
    level, then the stale set, then actions (wall times, durations and timings are ignored, and
    so are belief snapshots). The result has ``tick`` (None for a header field), ``field``
    (``"header <name>[.<key>...]"``, ``"missing tick"``, ``"agent count"``,
    ``"observations"``, ``"observations shape"``, ``"level"``, ``"stale agents"``,
    ``"actions"``, ``"actions shape"``), ``agent`` (the first differing agent, or None),
    ``a`` and ``b`` (the two values: the agent's row for arrays, whether the agent is stale
    for the stale set, whether the tick is present for a missing tick, with ``next_a`` and
    ``next_b`` the tick each log has there, None past its end). Raises
    :class:`engine.ticklog.TickLogError` for a file that is not a readable tick log.
    """
    return diff_logs(path_a, path_b)[0]


def format_difference(diff: Mapping[str, Any]) -> str:
    """One or two lines naming a difference from :func:`first_difference`."""
    fld, tick, agent = diff["field"], diff["tick"], diff["agent"]
    if tick is None:
        return (f"logs differ in the header: {fld[len('header '):]} is {diff['a']!r} in A, "
                f"{diff['b']!r} in B")
    if fld == "missing tick":
        def where(present: bool, nxt: int | None) -> str:
            if present:
                return "has it"
            return "has ended" if nxt is None else f"goes on at tick {nxt}"

        return (f"logs differ at tick {tick}: it is missing from "
                f"{'B' if diff['a'] else 'A'}\n"
                f"A {where(diff['a'], diff['next_a'])}, B {where(diff['b'], diff['next_b'])}")
    if fld == "stale agents":
        return (f"logs differ at tick {tick}: stale agents: agent {agent} is "
                f"{'' if diff['a'] else 'not '}stale in A, {'' if diff['b'] else 'not '}"
                f"stale in B")
    if agent is None:
        return f"logs differ at tick {tick}: {fld}: A {diff['a']}, B {diff['b']}"
    return f"logs differ at tick {tick}: {fld} of agent {agent}: A {diff['a']}, B {diff['b']}"
