"""The stages of a benchmark run other than throughput and held rates: the peers, the machine,
step latency, memory and start-up, quantization."""

from __future__ import annotations

import os
from typing import Any

from perf.bench.config import (
    AGENTLOOP,
    HELD_MODEL,
    PYMDP,
    PYMDP1,
    REFERENCE,
    engine_impl,
    latency_pairs,
    reference_pairs,
)
from perf.bench.figures import make_figure, median_of
from perf.bench.state import RunState


def peers(state: RunState) -> None:
    p = state.probes
    state.progress.note("peers: pymdp 0.0.7.1, pymdp 1.x (JAX), CuPy")
    if state.cfg.pymdp:
        reason = p.pymdp_reason()
        state.pymdp_ok = not reason
        if reason:
            state.skip("pymdp 0.0.7.1", reason + "; no ratios")
    else:
        state.skip("pymdp 0.0.7.1", "disabled (--no-pymdp); no ratios")
    if state.cfg.pymdp1:
        info, reason = p.start_pymdp1()
        state.pymdp1_ok = info is not None
        if info is None:
            p.jax_reason = reason
            state.skip("pymdp 1.x", reason)
        else:
            state.raw["pymdp1"] = info
    else:
        state.skip("pymdp 1.x", "disabled (--no-pymdp1)")
    state.skip("CuPy", p.cupy_reason())
    state.progress.step("machine: matmul and copy")


def machine(state: RunState) -> None:
    cpus = os.cpu_count() or 1
    for t in sorted({1, min(2, cpus)}):
        state.progress.note(f"machine: float64 matmul and copy, {t} thread(s)")
        state.peak[str(t)] = state.probes.machine(t)
        mm, bw = state.peak[str(t)]["matmul"], state.peak[str(t)]["bandwidth"]
        state.add(make_figure(f"machine/matmul/{t}thr", "machine",
                              f"float64 matmul, {t} thread(s)", "machine", "GFLOP/s",
                              "higher", [mm["gflops_max"]], subject="machine"))
        state.add(make_figure(f"machine/copy/{t}thr", "machine", f"copy, {t} thread(s)",
                              "machine", "GB/s", "higher", [bw["gbps_max"]],
                              subject="machine"))
        state.progress.step("machine")


def latency(state: RunState) -> None:
    cfg = state.cfg
    all_impls = [AGENTLOOP, REFERENCE] + ([PYMDP] if state.pymdp_ok else []) + \
        ([PYMDP1] if state.pymdp1_ok else [])
    with_reference = set(reference_pairs(cfg))
    for model, L in latency_pairs(cfg):
        impls = [i for i in all_impls if i != REFERENCE or (model, L) in with_reference]
        per: dict[str, list[float]] = {i: [] for i in impls}
        steps: dict[str, int] = {i: 0 for i in impls}
        failed: dict[str, str] = {}
        for r in range(cfg.repeats):
            state.progress.note(f"latency {model} L={L} repeat {r + 1}/{cfg.repeats}")
            for impl in impls:
                if impl in failed:
                    continue
                try:
                    times = state.probes.latency(model, L, impl)
                except Exception as exc:  # noqa: BLE001 - a peer's failure is a note
                    failed[impl] = f"{type(exc).__name__}: {exc}"[:300]
                    continue
                per[impl].append(median_of(times) * 1e6)
                steps[impl] += len(times)
            state.progress.step(f"latency {model} L={L}")
        state.probes.latency_done()
        for impl, reason in failed.items():
            state.skip(f"latency {model} L={L} {impl}", reason)
        ref = median_of(per[PYMDP]) if per.get(PYMDP) else None
        for impl in impls:
            if not per[impl]:
                continue
            state.latency_s[(model, L, impl)] = median_of(per[impl]) / 1e6
            note = f"{steps[impl]} steps over {len(per[impl])} repeats"
            if impl == PYMDP1:
                note += "; jitted, batch_size=1, after warm-up"
            state.add(make_figure(
                f"latency/{model}/L{L}/{impl}", "step latency",
                f"step latency, {model}, policy_len {L}", impl, "us", "lower",
                per[impl], ref, note))
            state.raw["latency"].append({"model": model, "policy_len": L, "impl": impl,
                                         "median_us_per_repeat": per[impl],
                                         "steps": steps[impl]})


def memory_and_startup(state: RunState) -> None:
    cfg = state.cfg
    L = cfg.held_policy_len
    pymdp_fp: dict[str, Any] | None = None
    if state.pymdp_ok:
        state.progress.note(f"memory: pymdp 0.0.7.1, {cfg.pymdp_agents} agents")
        try:
            pymdp_fp = state.probes.pymdp_footprint(L)
            state.raw["pymdp_footprint"] = pymdp_fp
        except Exception as exc:  # noqa: BLE001
            state.skip("pymdp 0.0.7.1 memory and create time", str(exc)[:300])
    ref_bytes = pymdp_fp["bytes_per_agent"] if pymdp_fp else None
    pymdp_note = f"; pymdp 0.0.7.1: RSS growth of {cfg.pymdp_agents} Agents" \
        if pymdp_fp else ""
    state.progress.step(f"memory: engine arrays, {cfg.memory_agents:,} agents")
    try:
        mem = state.probes.engine_memory()
        state.raw["engine_memory"] = mem
        state.add(make_figure(
            f"memory/{HELD_MODEL}/L1/engine-arrays", "memory per agent",
            f"bytes per agent, engine shared-memory arrays, {HELD_MODEL}", engine_impl(2),
            "B", "lower", [mem["per_agent_bytes"]], ref_bytes,
            f"model {mem['shared_model_bytes']:,} B once" + pymdp_note))
    except Exception as exc:  # noqa: BLE001
        state.skip("engine memory per agent", str(exc)[:300])
    state.progress.note(f"memory: RSS of {cfg.rss_agents:,} in-process agents")
    try:
        rss = state.probes.rss(L)
        state.raw["rss"] = rss
        state.add(make_figure(
            f"memory/{HELD_MODEL}/L{L}/rss", "memory per agent",
            f"bytes per agent, RSS growth of {rss['n']:,} in-process agents after a step, "
            f"{HELD_MODEL}", AGENTLOOP, "B", "lower", [rss["bytes_per_agent_after_step"]],
            ref_bytes, "perf.kernels.rss_per_agent" + pymdp_note))
    except Exception as exc:  # noqa: BLE001
        state.skip("RSS per agent", str(exc)[:300])
    jax_rows = [r for r in state.raw["throughput"] if r.get("impl") == PYMDP1
                and r["model"] == HELD_MODEL and r["policy_len"] == L and "jax" in r]
    if jax_rows:
        top = max(jax_rows, key=lambda r: r["n"])
        state.add(make_figure(
            f"memory/{HELD_MODEL}/L{L}/{PYMDP1}", "memory per agent",
            f"bytes per agent, pymdp 1.x arrays (batch of {top['n']:,}), {HELD_MODEL}",
            PYMDP1, "B", "lower", [top["jax"]["bytes_per_agent"]], ref_bytes,
            "A, B, C, D, ... broadcast per batch entry; temporaries not counted"))
    state.progress.step(f"start-up: {cfg.startup_agents:,} agents")
    runs: list[dict[str, Any]] = []
    for r in range(cfg.startup_repeats):
        state.progress.note(f"start-up: {cfg.startup_agents:,} agents, repeat {r + 1}")
        try:
            runs.append(state.probes.startup())
        except Exception as exc:  # noqa: BLE001
            state.skip("start-up", str(exc)[:300])
            break
    lat = state.latency_s.get((HELD_MODEL, L, PYMDP))

    def pymdp_startup(n: int) -> float | None:
        if pymdp_fp is None or lat is None:
            return None
        return n * (pymdp_fp["create_s_per_agent"] + lat)

    if runs:
        state.raw["startup"] = runs
        n = cfg.startup_agents
        state.add(make_figure(
            f"startup/{HELD_MODEL}/L{L}/N={n}/{engine_impl(cfg.startup_workers)}",
            "start-up", f"seconds to create {n:,} agents and finish their first tick",
            engine_impl(cfg.startup_workers), "s", "lower",
            [x["first_tick_s"] for x in runs], pymdp_startup(n),
            "pymdp 0.0.7.1 extrapolated: N x (create one Agent + one step)"
            if pymdp_fp else ""))
    if jax_rows:
        top = max(jax_rows, key=lambda r: r["n"])
        j = top["jax"]
        state.add(make_figure(
            f"startup/{HELD_MODEL}/L{L}/N={top['n']}/{PYMDP1}", "start-up",
            f"seconds to create {top['n']:,} agents and finish their first tick", PYMDP1,
            "s", "lower", [j["create_s"] + j["compile_s"]], pymdp_startup(top["n"]),
            "pymdp 1.x: Agent(batch_size=N) + first jitted step (compile included)"))
    state.progress.step("quantization")


def quantization(state: RunState) -> None:
    for case in state.cfg.quant_cases:
        state.progress.note(f"quantization {case}: {state.cfg.quant_agents} agents x "
                            f"{state.cfg.quant_ticks} ticks")
        try:
            rows = state.probes.quantization(case)
        except Exception as exc:  # noqa: BLE001
            state.skip(f"quantization {case}", str(exc)[:300])
            state.progress.step(f"quantization {case}")
            continue
        state.raw.setdefault("quantization", []).extend(rows)
        for row in rows:
            if row.get("control"):
                continue
            codec, L = row["codec"], row["policy_len"]
            note = (f"{row['agents']} agents x {row['ticks']} ticks vs float64 beliefs; "
                    "pymdp keeps float64 beliefs (the reference), so no ratio")
            fig = make_figure(
                f"quantization/{case}/L{L}/{codec}/agreement", "quantization",
                f"decisions equal to float64's, {codec} beliefs, {case}", codec, "%",
                "higher", [100.0 * row["agreement"]], None, note, subject="agentloop",
                compare_by="value")
            state.add({**fig, "digits": 6})
            state.add(make_figure(
                f"quantization/{case}/L{L}/{codec}/kl", "quantization",
                f"mean KL(float64 || {codec}) per factor (largest), {case}", codec, "nats",
                "lower", [max(row["kl_mean"])], None, note, subject="agentloop",
                compare_by=None))
        state.progress.step(f"quantization {case}")
