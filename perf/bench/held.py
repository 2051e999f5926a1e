"""The held-rate stage: the largest population whose p99 tick time stays under the budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from perf.bench.config import HELD_MODEL, PYMDP, PYMDP1, engine_impl
from perf.bench.figures import make_figure, median_of
from perf.bench.state import RunState


def held(state: RunState) -> None:
    cfg = state.cfg
    L = cfg.held_policy_len
    lat = state.latency_s.get((HELD_MODEL, L, PYMDP))
    for hz in cfg.held_hz:
        label = f"largest population held at {hz:g} Hz ({HELD_MODEL}, L={L})"
        tried: list[dict[str, Any]] = []

        def probe(n: int, hz: float = hz, tried: list[dict[str, Any]] = tried,
                  label: str = label) -> bool:
            state.progress.note(f"{label}: trying {n:,}")
            row = state.probes.held(n, hz, L)
            tried.append({k: row.get(k) for k in ("agents", "p50_ms", "p99_ms", "held")})
            return bool(row["held"])

        try:
            best, limited = largest_held(probe, cfg.held_start, cfg.held_growth,
                                         cfg.held_limit, cfg.held_tolerance)
        except Exception as exc:  # noqa: BLE001
            state.skip(label, f"{type(exc).__name__}: {exc}"[:300])
            state.progress.step(label)
            continue
        state.raw["held"].append({"hz": hz, "policy_len": L, "largest_held": best,
                                  "limited": limited, "tried": tried})
        budget_s = 1.0 / hz
        ref = float(math.floor(budget_s / lat)) if lat else None
        state.add(make_figure(
            f"held/{HELD_MODEL}/L{L}/{hz:g}Hz/{engine_impl(2)}", "held rate",
            f"largest population, p99 tick < {1e3 * budget_s:.1f} ms ({hz:g} Hz), "
            f"{HELD_MODEL}, policy_len {L}", engine_impl(2), "agents", "higher", [best], ref,
            f"one search ({len(tried)} runs of {cfg.held_ticks} ticks), full quality"
            + ("; at the search limit" if limited else "")
            + ("; pymdp 0.0.7.1 = budget / latency" if ref is not None else "")))
        jax_best = _jax_held(state, budget_s, L)
        if jax_best is not None:
            state.add(make_figure(
                f"held/{HELD_MODEL}/L{L}/{hz:g}Hz/{PYMDP1}", "held rate",
                f"largest population, step < {1e3 * budget_s:.1f} ms ({hz:g} Hz), "
                f"{HELD_MODEL}, policy_len {L}", PYMDP1, "agents", "higher", [jax_best], ref,
                "largest measured throughput size whose median step fits the budget"))
        state.progress.step(label)


def _jax_held(state: RunState, budget_s: float, L: int) -> int | None:
    rows = [r for r in state.raw["throughput"]
            if r.get("impl") == PYMDP1 and r["model"] == HELD_MODEL
            and r["policy_len"] == L and "steps_per_s_per_repeat" in r]
    if not rows:
        return None
    fits = [r["n"] for r in rows if r["n"] / median_of(r["steps_per_s_per_repeat"]) < budget_s]
    return max(fits) if fits else 0


def largest_held(held: Callable[[int], bool], start: int, growth: int, limit: int,
                 tolerance: float) -> tuple[int, bool]:
    """The largest population ``held(n)`` accepts: grow from ``start`` by ``growth`` up to
    ``limit``, then bisect between the last held and the first missed size until the gap is
    within ``tolerance`` of the answer (halve from ``start`` if ``start`` is not held).

    Returns ``(largest held, whether the search stopped at the limit)``.
    """
    growth = max(2, int(growth))
    n = max(1, int(start))
    if held(n):
        lo = n
        while True:
            nxt = lo * growth
            if nxt > limit:
                return lo, True
            if not held(nxt):
                hi = nxt
                break
            lo = nxt
    else:
        hi, lo = n, 0
        while hi > 1:
            if held(hi // 2):
                lo = hi // 2
                break
            hi //= 2
        if lo == 0:
            return 0, False
    while hi - lo > max(1, int(lo * tolerance)):
        mid = (lo + hi) // 2
        if held(mid):
            lo = mid
        else:
            hi = mid
    return lo, False
