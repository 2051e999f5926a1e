"""One kernel benchmark run: every measurement a :class:`Plan` asks for, as a results dict."""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import platform
import socket
import time
from typing import Any

import numba
import numpy as np

from engine import Agents
from perf.kernels.cost import belief_support, step_cost
from perf.kernels.machine import measure_bandwidth, measure_matmul
from perf.kernels.memory import memory_per_agent, rss_per_agent
from perf.kernels.plan import START_TIME, Plan, log
from perf.kernels.provenance import git_state, versions
from perf.kernels.timing import OtherLoad, measure_latency, measure_throughput
from perf.models import model_by_name


def _pymdp_available() -> bool:
    try:
        import pymdp.agent  # noqa: F401
    except ImportError:
        return False
    return True


def run(plan: Plan, command: str = "") -> dict[str, Any]:
    """Measure everything ``plan`` asks for; returns the JSON-ready results."""
    rng = np.random.default_rng(plan.seed)
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = tuple(t for t in plan.threads if 1 <= t <= max_threads)
    if threads != plan.threads:
        log(f"threads {plan.threads} limited to {threads} (Numba has {max_threads})")
    use_pymdp = plan.pymdp and _pymdp_available()
    if plan.pymdp and not use_pymdp:
        log("pymdp is not installed: no pymdp figures or ratios")
    results: dict[str, Any] = {
        "benchmark": "kernels", "command": command,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": max_threads,
                    "platform": platform.platform(), "processor": platform.processor(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(), "git": git_state(), "plan": dataclasses.asdict(plan),
    }

    # machine peaks
    peak: dict[str, Any] = {"matmul": {}, "bandwidth": {}}
    for t in threads:
        log(f"matmul {plan.matmul_n}^3 float64, {t} BLAS thread(s)")
        peak["matmul"][str(t)] = measure_matmul(plan.matmul_n, t, plan.matmul_repeats)
        log(f"copy {plan.copy_mb} MiB, {t} thread(s)")
        peak["bandwidth"][str(t)] = measure_bandwidth(plan.copy_mb, t, plan.copy_repeats)
    results["peak"] = peak

    # latency
    latency: list[dict[str, Any]] = []
    impls = ["numba", "reference"] + (["pymdp"] if use_pymdp else [])
    pymdp_us: dict[tuple[str, int], float] = {}
    for name in plan.models:
        model = model_by_name(name)
        for L in plan.policy_lens:
            rows = []
            for impl in impls:
                log(f"latency {name} policy_len={L} {impl}")
                with OtherLoad() as load:
                    row = {"model": name, "policy_len": L,
                           **measure_latency(model, L, impl, plan, rng)}
                row["other_load_cores"] = load.cores
                rows.append(row)
            if use_pymdp:
                pymdp_us[(name, L)] = rows[-1]["median_us"]
            for row in rows:
                ref = pymdp_us.get((name, L))
                row["ratio_vs_pymdp"] = ref / row["median_us"] if ref else None
            latency.extend(rows)
    results["latency"] = latency

    # throughput, then step cost from the beliefs of the largest population
    throughput: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    for name in plan.models:
        model = model_by_name(name)
        for L in plan.policy_lens:
            cap = plan.max_agents_long_policy if L >= 3 else max(plan.sizes)
            per_agent_s: dict[int, float] = {}
            last: Agents | None = None
            rows = []
            for n in plan.sizes:
                for t in threads:
                    base = {"model": name, "policy_len": L, "n": n, "threads": t}
                    if n > cap:
                        rows.append({**base, "skipped": f"policy_len {L} capped at {cap} agents"})
                        continue
                    est = per_agent_s.get(t, 0.0) * n * (plan.warmup_steps + plan.timed_steps)
                    if est > plan.row_budget_s:
                        rows.append({**base, "skipped": f"estimated {est:.0f} s > row budget "
                                                        f"{plan.row_budget_s:.0f} s"})
                        log(f"throughput {name} L={L} N={n} threads={t}: skipped ({est:.0f} s)")
                        continue
                    log(f"throughput {name} policy_len={L} N={n} threads={t}")
                    last = None
                    gc.collect()
                    with OtherLoad() as load:
                        row, last = measure_throughput(model, L, n, t, plan, rng)
                    row["other_load_cores"] = load.cores
                    per_agent_s[t] = row["step_s_median"] / n
                    rows.append({"model": name, "policy_len": L, **row})
            cost = None
            if last is not None:
                support = belief_support(last, plan.support_sample_agents, rng)
                cost = step_cost(last, support)
                last = None
                if cost is not None:
                    costs.append({"model": name, "policy_len": L, **cost})
            ref = pymdp_us.get((name, L))
            for row in rows:
                if "skipped" in row:
                    continue
                rate = row["steps_per_s_median"]
                row["pymdp_steps_per_s"] = 1e6 / ref if ref else None
                row["ratio_vs_pymdp"] = rate * ref / 1e6 if ref else None
                if cost is not None:
                    mm = peak["matmul"][str(row["threads"])]["gflops_max"]
                    bw = peak["bandwidth"][str(row["threads"])]["gbps_max"]
                    row["gflops"] = rate * cost["flops_total"] / 1e9
                    row["pct_peak_flops"] = 100.0 * row["gflops"] / mm
                    row["gbps"] = rate * cost["bytes_total"] / 1e9
                    row["pct_peak_bandwidth"] = 100.0 * row["gbps"] / bw
            throughput.extend(rows)
    results["throughput"] = throughput
    results["step_cost"] = costs

    # memory
    memory = []
    for name in plan.models:
        for L in plan.policy_lens:
            log(f"memory {name} policy_len={L}")
            memory.append({"model": name, **memory_per_agent(model_by_name(name), L,
                                                             plan.memory_sample_agents)})
    results["memory"] = memory
    if plan.rss_agents > 0:
        log(f"RSS {plan.rss_model} policy_len={plan.rss_policy_len} N={plan.rss_agents}")
        results["rss"] = {"model": plan.rss_model,
                          **rss_per_agent(plan.rss_model, plan.rss_policy_len, plan.rss_agents,
                                          plan.seed)}
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - START_TIME
    return results


