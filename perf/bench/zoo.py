"""The zoo stage: every zoo model on its own (10,000 agents; 1,000 at policy_len >= 3), agentloop
against the strongest peer measured in the same run, with the achieved FLOP/s as a share of the
machine's measured peak and a sentence on what bounds it; on models with several modalities,
agentloop's pymdp 1.x mode against the strongest pymdp 1.x form too (docs/zoo.md)."""

from __future__ import annotations

import time
from typing import Any

from perf.bench.config import (
    AGENTLOOP,
    AGENTLOOP_MT,
    AGENTLOOP_MT1,
    IMPL_NAMES,
    PYMDP,
    PYMDP1,
    PYMDP1_VMAP,
    STEP_PARAMS,
    zoo_pairs,
)
from perf.bench.figures import make_figure, median_of
from perf.bench.probes import PopulationHandle
from perf.bench.report import percent_text
from perf.bench.state import RunState
from perf.bench.throughput import jax_memory_limit

#: Warm-up stops early once a population's warm-up steps took this long together.
WARMUP_BUDGET_S = 2.0
#: A population whose step takes this long is timed one step per repeat.
SLOW_STEP_S = 2.0


def zoo(state: RunState) -> None:
    for model, L in zoo_pairs(state.cfg):
        label = f"zoo {model} L={L}"
        try:
            zoo_pair(state, model, L)
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            state.skip(label, f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300])
        state.progress.step(label)


def zoo_agents(state: RunState, policy_len: int) -> int:
    """How many agents the zoo runs a model with at ``policy_len``."""
    cfg = state.cfg
    return cfg.zoo_agents_long if policy_len >= 3 else cfg.zoo_agents


def _memory_reasons(state: RunState, model: str, L: int, n: int) -> dict[str, str]:
    """Why a pymdp 1.x form would not fit in memory ({} when both fit)."""
    import numpy as np

    from perf.models import model_by_name

    m = model_by_name(model)
    limit = jax_memory_limit(state.cfg.jax_memory_bytes)
    per_agent_model = 4.0 * sum(int(np.size(a)) for a in (*m.A, *m.B, *m.C, *m.D))
    P = int(m.policies_for(L).shape[0])
    estimates = {PYMDP1: 3.0 * per_agent_model * n,           # A, B copied per batch entry
                 PYMDP1_VMAP: 16.0 * n * P * (sum(m.num_states) + sum(m.num_obs))}
    return {impl: f"estimated {est / 1e9:.1f} GB > pymdp 1.x memory limit {limit / 1e9:.1f} GB"
            for impl, est in estimates.items() if est > limit}


def pymdp1_mode_wanted(state: RunState, model: str) -> bool:
    """Whether the zoo measures agentloop's pymdp 1.x mode on ``model``: where the two
    generations' information gains differ (two or more modalities), and only beside the
    pymdp 1.x peer it is held against."""
    from perf.models import model_by_name

    return state.cfg.zoo_pymdp1_mode and state.pymdp1_ok and \
        model_by_name(model).num_modalities >= 2


def _open(state: RunState, model: str, L: int, n: int) -> dict[str, PopulationHandle]:
    impls = [AGENTLOOP_MT] + ([AGENTLOOP_MT1] if pymdp1_mode_wanted(state, model) else [])
    if state.pymdp1_ok:
        too_big = _memory_reasons(state, model, L, n)
        wanted = [PYMDP1_VMAP] + ([PYMDP1] if state.cfg.zoo_batched_agent else [])
        for impl in wanted:
            if impl in too_big:
                state.skip(f"zoo {model} L={L} N={n:,} {IMPL_NAMES[impl]}", too_big[impl])
            else:
                impls.append(impl)
    handles: dict[str, PopulationHandle] = {}
    for impl in impls:
        state.progress.note(f"zoo {model} L={L} N={n:,}: creating {IMPL_NAMES[impl]}")
        try:
            handles[impl] = state.probes.open_population(model, L, n, impl)
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            state.skip(f"zoo {model} L={L} N={n:,} {IMPL_NAMES[impl]}",
                       f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300])
    return handles


def _measure(state: RunState, label: str, handles: dict[str, PopulationHandle]
             ) -> dict[str, list[float]]:
    """Agent-steps/s of each population per repeat, alternating between them."""
    cfg = state.cfg
    rates: dict[str, list[float]] = {impl: [] for impl in handles}
    est: dict[str, float] = {}
    for r in range(cfg.repeats):
        state.progress.note(f"{label} repeat {r + 1}/{cfg.repeats}")
        for impl, h in handles.items():
            if r == 0:
                began, warm = time.perf_counter(), [h.step()]
                while len(warm) < cfg.warmup_steps and \
                        time.perf_counter() - began < WARMUP_BUDGET_S:
                    warm.append(h.step())
                est[impl] = max(min(warm), 1e-7)
            k = 1 if est[impl] >= SLOW_STEP_S else max(
                cfg.timed_steps, min(cfg.max_timed_steps, int(cfg.min_timed_seconds / est[impl])))
            rates[impl].append(h.n / median_of([h.step() for _ in range(k)]))
    return rates


def bound_sentence(flops_per_step: float, flop_share: float | None,
                   bandwidth_share: float | None) -> str:
    """One sentence on what bounds agentloop's rate, from its shares of the machine's peaks."""
    if flop_share is None or bandwidth_share is None:
        return "not known: the machine's peaks were not measured"
    if flop_share >= 50.0:
        return f"arithmetic: {percent_text(flop_share)} of the measured FLOP peak"
    if bandwidth_share >= 50.0:
        return f"memory bandwidth: {percent_text(bandwidth_share)} of the measured copy rate"
    if flops_per_step < 20_000:
        return (f"fixed costs per step: the model needs only {flops_per_step:.3g} FLOP a step "
                f"({percent_text(flop_share)} of the FLOP peak)")
    return (f"neither arithmetic ({percent_text(flop_share)} of the FLOP peak) nor memory "
            f"({percent_text(bandwidth_share)} of the copy rate): the work per entry "
            "(indirect stores, branches, exp/log) does")


def zoo_pair(state: RunState, model: str, L: int) -> None:
    """Measure one zoo model at one policy length; add its figures and its raw row."""
    n = zoo_agents(state, L)
    label = f"zoo {model} L={L} N={n:,}"
    handles = _open(state, model, L, n)
    live = 1.0
    try:
        rates = _measure(state, label, handles) if AGENTLOOP_MT in handles else {}
        measure_live = handles[AGENTLOOP_MT].live_fraction if rates else None
        if measure_live is not None:
            live = measure_live()
    finally:
        for h in handles.values():
            h.close()
    if not rates.get(AGENTLOOP_MT):
        return
    lat = state.latency_s.get((model, L, PYMDP))
    pymdp_rate = 1.0 / lat if lat else None
    key = f"zoo/{model}/L{L}"
    for impl, values in rates.items():
        mode1 = impl == AGENTLOOP_MT1            # not like for like with pymdp 0.0.7.1
        state.add(make_figure(
            f"{key}/N={n}/{impl}", "zoo", f"agent-steps/s, {model}, policy_len {L}, {n:,} "
            "agents", impl, "steps/s", "higher", values, None if mode1 else pymdp_rate,
            f"{len(values)} alternating repeats" + ("; pymdp 0.0.7.1 = 1/latency, one process"
                                                    if pymdp_rate and not mode1 else ""),
            compare_by=None if mode1 else "auto"))
    peers = {impl: median_of(v) for impl, v in rates.items()
             if impl not in (AGENTLOOP_MT, AGENTLOOP_MT1)}
    if pymdp_rate:
        peers[PYMDP] = pymdp_rate
    ours = rates[AGENTLOOP_MT]
    strongest = max(peers, key=lambda i: peers[i]) if peers else None
    ratio = None
    if strongest is not None:
        theirs = rates.get(strongest) or [peers[strongest]] * len(ours)
        fig = make_figure(
            f"{key}/vs-strongest", "zoo", f"agentloop / strongest peer, {model}, policy_len {L}, "
            f"{n:,} agents", AGENTLOOP_MT, "x", "higher",
            [a / b for a, b in zip(ours, theirs, strict=True)], None,
            f"strongest peer: {IMPL_NAMES[strongest]}", subject="agentloop", compare_by="value")
        state.add(fig)
        ratio = fig["median"]
    cost = state.probes.zoo_cost(model, L, live)
    shares = _flop_shares(state, key, n, cost, rates, pymdp_rate)
    bw = None
    if state.peak:
        top = str(max(int(t) for t in state.peak))
        bw = 100.0 * median_of(ours) * cost["bytes_total"] / \
            (state.peak[top]["bandwidth"]["gbps_max"] * 1e9)
    state.raw["zoo"].append({
        "model": model, "policy_len": L, "n": n, "steps_per_s_per_repeat": rates,
        "pymdp_rate": pymdp_rate, "strongest_peer": strongest,
        "strongest_peer_rate": peers.get(strongest) if strongest else None,
        "ratio_vs_strongest": ratio, "flop_share_percent": shares,
        "bandwidth_share_percent": bw,
        "latency_us": {impl: 1e6 * state.latency_s[(model, L, impl)]
                       for impl in (AGENTLOOP, PYMDP, PYMDP1)
                       if (model, L, impl) in state.latency_s},
        "cost": {k: cost[k] for k in ("S", "O_joint", "joint_terms", "live_fraction", "P",
                                      "tree_nodes",
                                      "flops_total", "flops_per_modality_total",
                                      "bytes_total") if k in cost},
        "bound": bound_sentence(float(cost["flops_total"]), shares.get(AGENTLOOP_MT), bw),
        "step_params": dict(STEP_PARAMS),
        "pymdp1_mode": _pymdp1_mode(state, key, n, rates)})


def _pymdp1_mode(state: RunState, key: str, n: int, rates: dict[str, list[float]]
                 ) -> dict[str, Any] | None:
    """agentloop's pymdp 1.x mode against the strongest pymdp 1.x form measured beside it (a
    per-repeat ratio figure); the raw row's summary, None when the mode was not measured."""
    ours = rates.get(AGENTLOOP_MT1)
    if not ours:
        return None
    out: dict[str, Any] = {"steps_per_s": median_of(ours), "peer": None, "peer_rate": None,
                           "ratio": None}
    jax = {impl: median_of(rates[impl]) for impl in (PYMDP1_VMAP, PYMDP1) if rates.get(impl)}
    if jax:
        peer = max(jax, key=lambda i: jax[i])
        _, model, L = key.split("/")
        fig = make_figure(
            f"{key}/pymdp1-mode-vs-pymdp1", "zoo", f"agentloop pymdp 1.x mode / strongest "
            f"pymdp 1.x form, {model}, policy_len {L[1:]}, {n:,} agents", AGENTLOOP_MT1, "x",
            "higher", [a / b for a, b in zip(ours, rates[peer], strict=True)], None,
            f"strongest pymdp 1.x form: {IMPL_NAMES[peer]}; both per-modality gain, "
            f"{_params_text()}", subject="agentloop", compare_by="value")
        state.add(fig)
        out.update(peer=peer, peer_rate=jax[peer], ratio=fig["median"])
    return out


def _params_text() -> str:
    return ", ".join(f"{k} {v}" for k, v in STEP_PARAMS.items())


def _flop_shares(state: RunState, key: str, n: int, cost: dict[str, Any],
                 rates: dict[str, list[float]], pymdp_rate: float | None) -> dict[str, float]:
    """Add each implementation's achieved FLOP/s as a % of the measured peak; the medians."""
    if not state.peak:
        return {}
    top = str(max(int(t) for t in state.peak))
    out: dict[str, float] = {}
    items = list(rates.items()) + ([(PYMDP, [pymdp_rate])] if pymdp_rate else [])
    for impl, values in items:
        per_mod = impl in (PYMDP1, PYMDP1_VMAP, AGENTLOOP_MT1)
        flops = float(cost["flops_per_modality_total" if per_mod else "flops_total"])
        threads = "1" if impl == PYMDP else top
        peak = state.peak[threads]["matmul"]["gflops_max"] * 1e9
        fig = make_figure(
            f"{key}/flops/{impl}", "zoo", f"% of measured FLOP peak, {key.split('/')[1]}, "
            f"policy_len {key.split('/')[2][1:]}, {n:,} agents", impl, "%", "higher",
            [100.0 * r * flops / peak for r in values], None,
            f"{flops:.4g} FLOP/step ({'per-modality' if per_mod else 'joint'} information "
            f"gain, perf.kernels.model_cost) vs {threads}-thread float64 matmul peak",
            compare_by=None)
        state.add(fig)
        out[impl] = float(fig["median"])
    return out
