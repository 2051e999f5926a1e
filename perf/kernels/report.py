"""The printed tables of a kernel benchmark's results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _si(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}x"


def _us(x: float) -> str:
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def format_report(results: dict[str, Any]) -> str:
    """The human-readable tables of a results dict."""
    out = [f"agentloop kernel benchmark  {results['started']}  host {results['host']}",
           f"command: {results['command']}",
           f"git {results['git'].get('commit')} dirty={results['git'].get('dirty')}  "
           f"cpus={results['machine']['cpu_count']} numba_threads="
           f"{results['machine']['numba_threads']}  load {results['machine']['loadavg_start']}"
           f" -> {results['machine'].get('loadavg_end')}", ""]
    peak = results["peak"]
    out.append("Machine (float64 matmul GFLOP/s, copy GB/s = read+write bytes; max [median])")
    rows = []
    for t in peak["matmul"]:
        mm, bw = peak["matmul"][t], peak["bandwidth"][t]
        rows.append([t, f"{mm['gflops_max']:.1f} [{mm['gflops_median']:.1f}]",
                     f"{bw['gbps_max']:.1f} [{bw['gbps_median']:.1f}]",
                     f"{bw['numpy_copy_gbps_max']:.1f}"])
    out += [table(["threads", f"matmul {peak['matmul'][t]['n']}^3", "numba copy",
                   "np.copyto (1 thr)"], rows), ""]

    out.append("Step latency, one agent, us: median [min-max] (steps); ratio = pymdp median / "
               "this median")
    rows = []
    for r in results["latency"]:
        note = "" if r["steps"] >= r["target_steps"] else " (time-capped)"
        rows.append([r["model"], str(r["policy_len"]), r["impl"], _us(r["median_us"]),
                     f"{_us(r['min_us'])}-{_us(r['max_us'])}", f"{r['steps']}{note}",
                     _ratio(r["ratio_vs_pymdp"]), f"{r['other_load_cores']:.2f}"])
    out += [table(["model", "L", "impl", "median", "min-max", "steps", "vs pymdp", "others"],
                  rows), ""]

    out.append("Throughput, numba float32, agent-steps/s: median [min, max]; pymdp = 1/latency; "
               "%peak vs this run's matmul / copy at the same threads")
    rows = []
    for r in results["throughput"]:
        head = [r["model"], str(r["policy_len"]), _si(r["n"]), str(r["threads"])]
        if "skipped" in r:
            rows.append(head + ["skipped: " + r["skipped"], "", "", "", "", "", ""])
            continue
        rows.append(head + [
            f"{_si(r['steps_per_s_median'])} [{_si(r['steps_per_s_min'])}, "
            f"{_si(r['steps_per_s_max'])}]",
            str(r["timed_steps"]), _ratio(r.get("ratio_vs_pymdp")),
            "-" if r.get("gflops") is None else f"{r['gflops']:.2f}",
            "-" if r.get("pct_peak_flops") is None else f"{r['pct_peak_flops']:.1f}%",
            "-" if r.get("pct_peak_bandwidth") is None
            else f"{r['gbps']:.2f} ({r['pct_peak_bandwidth']:.1f}%)",
            f"{r['other_load_cores']:.2f}"])
    out += [table(["model", "L", "N", "thr", "steps/s", "timed", "vs pymdp", "GFLOP/s",
                   "%peak", "GB/s (%bw)", "others"], rows),
            "others = cores busy with other processes during the row (0 = machine was ours)", ""]

    out.append("Work per agent step (numba kernel; support measured on the largest population "
               "after its run)")
    rows = []
    for c in results["step_cost"]:
        sup = c["support"] or {}
        rows.append([c["model"], str(c["policy_len"]), str(c["S"]), str(c["P"]),
                     str(c["tree_nodes"]), f"{sup.get('states', c['S']):g}",
                     f"{sup.get('outcomes', 0):g}", _si(c["flops_total"]),
                     str(c["bytes_total"])])
    out += [table(["model", "L", "S", "policies", "nodes", "support", "outcomes", "FLOP",
                   "bytes"], rows), ""]

    out.append("Memory: per-agent arrays (bytes), shared model layout, per-thread scratch")
    rows = [[m["model"], str(m["policy_len"]), f"{m['per_agent_bytes']:.0f}",
             ", ".join(f"{k}={v:.0f}" for k, v in m["per_agent_breakdown"].items()),
             _si(m["shared_model_bytes"]), _si(m["scratch_bytes"])]
            for m in results["memory"]]
    out += [table(["model", "L", "per agent", "breakdown", "model", "scratch"], rows)]
    rss = results.get("rss")
    if rss:
        out.append(f"RSS {rss['model']} policy_len={rss['policy_len']} N={_si(rss['n'])}: "
                   f"{rss['bytes_per_agent_created']:.0f} B/agent after create "
                   f"({rss['create_s']:.2f} s), {rss['bytes_per_agent_after_step']:.0f} B/agent "
                   f"after the first step ({rss['first_step_s']:.2f} s)")
    out.append(f"\nelapsed {results['elapsed_s']:.0f} s")
    return "\n".join(out)


