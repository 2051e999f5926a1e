"""Medians of ``perf/alternate.sh``'s rounds, before and after, as Markdown tables:
``python perf/alternate_table.py OUT``."""

from __future__ import annotations

import glob
import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

SIDES = ("old", "new")


def _load(out: str, kind: str, side: str) -> list[dict[str, Any]]:
    return [json.load(open(path)) for path in sorted(glob.glob(f"{out}/{kind}-{side}-*.json"))]


def _row(name: str, runs: dict[str, list[dict[str, Any]]],
         value: Callable[[dict[str, Any]], float]) -> str:
    old, new = (statistics.median(value(run) for run in runs[side]) for side in SIDES)
    return f"| {name} | {old:,.3g} | {new:,.3g} | {new / old:.2f} |"


def kernel_rows(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Numba step latency and throughput rows of ``perf.kernels``."""
    rows = []
    for r in runs["old"][0]["latency"]:
        if r["impl"] != "numba":
            continue
        key = (r["model"], r["policy_len"])
        rows.append(_row(f"step latency, one agent, {key[0]} L={key[1]} (us)", runs,
                         lambda d, key=key: next(x["median_us"] for x in d["latency"]
                                                 if x["impl"] == "numba"
                                                 and (x["model"], x["policy_len"]) == key)))
    for r in runs["old"][0]["throughput"]:
        key = (r["model"], r["policy_len"], r["n"], r["threads"])
        rows.append(_row(f"agent-steps/s, {key[0]} L={key[1]} N={key[2]:,} threads={key[3]}",
                         runs, lambda d, key=key: next(
                             x["steps_per_s_median"] for x in d["throughput"]
                             if (x["model"], x["policy_len"], x["n"], x["threads"]) == key)))
    return rows


def engine_rows(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Hand-off overhead, held rates, capacity, start-up and memory rows of ``perf.engine``."""
    rows = [_row("hand-off overhead, 0 agents, p50 (us)", runs,
                 lambda d: d["overhead"][0]["p50_us"]),
            _row("hand-off overhead, 0 agents, p99 (us)", runs,
                 lambda d: d["overhead"][0]["p99_us"])]
    for i, h in enumerate(runs["old"][0]["held"]):
        what = f"{h['agents']:,} agents {h['hz']:g} Hz L={h['policy_len']} w={h['workers']}"
        rows.append(_row(f"held run {what}: tick p50 (ms)", runs,
                         lambda d, i=i: d["held"][i]["p50_ms"]))
        rows.append(_row(f"held run {what}: tick p99 (ms)", runs,
                         lambda d, i=i: d["held"][i]["p99_ms"]))
    rows.append(_row("largest policy_len-3 population held at 10 Hz", runs,
                     lambda d: d["largest_policy_len_3"]["largest_held"]))
    rows.append(_row("start-up: 1,000,000 agents to first tick (s)", runs,
                     lambda d: d["startup"]["first_tick_s"]))
    rows.append(_row("memory per agent (B)", runs, lambda d: d["memory"]["per_agent_bytes"]))
    return rows


def main(out: str) -> None:
    """Print both tables for the rounds in ``out``."""
    kernels = {side: _load(out, "k", side) for side in SIDES}
    engine = {side: _load(out, "e", side) for side in SIDES}
    print(f"rounds: {len(kernels['old'])} old, {len(kernels['new'])} new\n")
    print("| kernel figure (perf.kernels --quick --no-pymdp) | before | after | after/before |")
    print("| --- | --- | --- | --- |")
    print("\n".join(kernel_rows(kernels)))
    print("\n| engine figure (perf.engine --quick) | before | after | after/before |")
    print("| --- | --- | --- | --- |")
    print("\n".join(engine_rows(engine)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/alternate")
