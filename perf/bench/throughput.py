"""The throughput stage: agent-steps/s against population for every implementation, and the
share of the machine's measured FLOP and bandwidth limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perf.bench.config import IMPL_NAMES, PYMDP, PYMDP1, REFERENCE, engine_impl
from perf.bench.figures import make_figure, median_of
from perf.bench.probes import PopulationHandle
from perf.bench.state import RunState


def throughput(state: RunState) -> None:
    cfg = state.cfg
    for model in cfg.throughput_models:
        for L in cfg.policy_lens:
            _throughput_curve(state, model, L)


def _throughput_curve(state: RunState, model: str, L: int) -> None:
    cfg = state.cfg
    cap = cfg.max_agents_long_policy if L >= 3 else max(cfg.sizes)
    per_agent_s: dict[str, tuple[int, float]] = {}  # (n, step time per agent) measured
    jax_rss_per_agent = 0.0
    jax_sizes: list[tuple[int, float]] = []     # (n, child RSS after its setup)
    jax_off = "" if state.pymdp1_ok else "pymdp 1.x not running"
    pymdp_rate = _pymdp_rate(state, model, L)
    last_rows: dict[str, dict[str, Any]] = {}
    for n in cfg.sizes:
        label = f"throughput {model} L={L} N={n:,}"
        if n > cap:
            state.raw["throughput"].append({"model": model, "policy_len": L, "n": n,
                                            "skipped": f"policy_len {L} capped at {cap:,}"})
            state.progress.step(label + " (skipped: cap)")
            continue
        impls = [engine_impl(w) for w in cfg.workers]
        if n <= cfg.reference_max_agents:
            impls.append(REFERENCE)
        if not jax_off:
            impls.append(PYMDP1)
        handles: dict[str, PopulationHandle] = {}
        for impl in impls:
            steps_needed = cfg.warmup_steps + cfg.timed_steps * cfg.repeats
            measured_n, per_agent = per_agent_s.get(impl, (0, 0.0))
            # a per-agent time from a population 100x smaller is mostly fixed cost
            est = per_agent * n * steps_needed if measured_n * 100 >= n else 0.0
            why = ""
            if est > cfg.row_budget_s:
                why = f"estimated {est:.0f} s > row budget {cfg.row_budget_s:.0f} s"
            if impl == PYMDP1 and not why:
                mem = jax_rss_per_agent * n * 1.5
                limit = jax_memory_limit(cfg.jax_memory_bytes)
                if mem > limit:
                    why = (f"estimated {mem / 1e9:.1f} GB > pymdp 1.x memory limit "
                           f"{limit / 1e9:.1f} GB")
            if why:
                state.raw["throughput"].append({"model": model, "policy_len": L, "n": n,
                                                "impl": impl, "skipped": why})
                if impl == PYMDP1:
                    jax_off = why
                    state.skip(f"pymdp 1.x throughput {model} L={L} N>={n:,}", why)
                continue
            state.progress.note(f"{label}: creating {IMPL_NAMES.get(impl, impl)}")
            try:
                handles[impl] = state.probes.open_population(model, L, n, impl)
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
                state.skip(f"throughput {model} L={L} N={n:,} {impl}", reason)
                if impl == PYMDP1:
                    jax_off = reason
        rates: dict[str, list[float]] = {i: [] for i in handles}
        timed: dict[str, int] = {i: 0 for i in handles}
        est_step: dict[str, float] = {}
        try:
            for r in range(cfg.repeats):
                state.progress.note(f"{label} repeat {r + 1}/{cfg.repeats}")
                for impl, h in handles.items():
                    if r == 0:
                        warm = [h.step() for _ in range(max(1, cfg.warmup_steps))]
                        est_step[impl] = max(min(warm), 1e-7)
                    k = max(cfg.timed_steps, min(cfg.max_timed_steps,
                                                 int(cfg.min_timed_seconds / est_step[impl])))
                    times = [h.step() for _ in range(k)]
                    timed[impl] += k
                    rates[impl].append(n / median_of(times))
        finally:
            for h in handles.values():
                h.close()
        for impl, h in handles.items():
            if not rates[impl]:
                continue
            per_agent_s[impl] = (n, 1.0 / median_of(rates[impl]))
            if impl == PYMDP1:
                jax_sizes.append((n, float(h.extra.get("rss_bytes", 0.0))))
                jax_rss_per_agent = _jax_bytes_per_agent(
                    jax_sizes, float(h.extra.get("bytes_per_agent", 0.0)))
            row = {"model": model, "policy_len": L, "n": n, "impl": impl,
                   "steps_per_s_per_repeat": rates[impl], "timed_steps": timed[impl],
                   **({"jax": h.extra} if h.extra else {})}
            state.raw["throughput"].append(row)
            last_rows[impl] = row
            note = f"{timed[impl]} timed steps over {len(rates[impl])} repeats"
            if impl == PYMDP1:
                note += "; jitted, batch_size=N, after warm-up"
            state.add(make_figure(
                f"throughput/{model}/L{L}/N={n}/{impl}", "throughput",
                f"agent-steps/s, {model}, policy_len {L}, {n:,} agents", impl, "steps/s",
                "higher", rates[impl], pymdp_rate,
                note + ("; pymdp 0.0.7.1 = 1/latency (no batching)" if pymdp_rate else "")))
        state.progress.step(label)
    _peak_share(state, model, L, last_rows, pymdp_rate)


def _pymdp_rate(state: RunState, model: str, L: int) -> float | None:
    lat = state.latency_s.get((model, L, PYMDP))
    return 1.0 / lat if lat else None


def _peak_share(state: RunState, model: str, L: int, last_rows: dict[str, dict[str, Any]],
                pymdp_rate: float | None) -> None:
    if not last_rows or not state.peak:
        return
    try:
        cost = state.probes.step_cost(model, L)
    except Exception as exc:  # noqa: BLE001
        state.skip(f"step cost {model} L={L}", f"{type(exc).__name__}: {exc}")
        return
    if cost is None:
        state.skip(f"% of machine limits {model} L={L}",
                   "the step cost model (perf.kernels.step_cost) covers one-factor models")
        return
    state.raw["step_cost"].append({"model": model, "policy_len": L, **cost})
    top = str(max(int(t) for t in state.peak))
    for impl, row in last_rows.items():
        if impl.startswith("engine"):
            workers = int(impl.removeprefix("engine-w"))
            threads = str(min(int(top), workers)) if workers else top   # w=0: all threads
        else:
            threads = "1" if impl == REFERENCE else top         # NumPy: one; JAX: all
        mm = state.peak[threads]["matmul"]["gflops_max"]
        bw = state.peak[threads]["bandwidth"]["gbps_max"]
        pymdp_mm = state.peak["1"]["matmul"]["gflops_max"]
        pymdp_bw = state.peak["1"]["bandwidth"]["gbps_max"]
        n = row["n"]
        for what, unit_cost, peak, pymdp_peak, name in (
                ("flops", cost["flops_total"], mm * 1e9, pymdp_mm * 1e9, "FLOP"),
                ("bandwidth", cost["bytes_total"], bw * 1e9, pymdp_bw * 1e9, "memory bw")):
            vals = [100.0 * r * unit_cost / peak for r in row["steps_per_s_per_repeat"]]
            ref = 100.0 * pymdp_rate * unit_cost / pymdp_peak if pymdp_rate else None
            state.add(make_figure(
                f"peak/{model}/L{L}/{what}/{impl}", "share of machine",
                f"% of measured {name} limit, {model}, policy_len {L}, {n:,} agents", impl,
                "%", "higher", vals, ref,
                f"{unit_cost:.4g} {'FLOP' if what == 'flops' else 'B'}/step "
                f"(perf.kernels.step_cost) vs {threads}-thread peak"))


def jax_memory_limit(configured: float) -> float:
    """pymdp 1.x batches may use at most this: ``configured``, and 60% of available memory."""
    try:
        import psutil

        return min(configured, 0.6 * psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing: trust the configured limit
        return configured


def _jax_bytes_per_agent(sizes: Sequence[tuple[int, float]], array_bytes: float) -> float:
    """Memory per batch entry of pymdp 1.x: 3x its arrays (measured: parameters, their
    broadcast copies, temporaries), or the child's RSS growth per agent between the smallest
    and largest measured batch when that is more (the policy tree's temporaries)."""
    estimate = 3.0 * array_bytes
    if len(sizes) >= 2:
        (n0, r0), (n1, r1) = min(sizes), max(sizes)
        if n1 > n0 and r0 > 0 and r1 > 0:
            estimate = max(estimate, (r1 - r0) / (n1 - n0))
    return estimate
