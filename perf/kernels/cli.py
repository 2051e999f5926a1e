"""The command line of ``python -m perf.kernels``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perf.kernels.plan import FULL, QUICK, RESULTS_DIR, Plan, log
from perf.kernels.report import format_report
from perf.kernels.suite import run
from perf.models import model_by_name

DESCRIPTION = ("Kernel benchmark: step latency, throughput, FLOP and bandwidth use, memory per "
               "agent.")


def default_json_path(quick: bool) -> Path:
    date = datetime.date.today().isoformat()
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"kernels{'-quick' if quick else ''}-{date}-{host}.json"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x)


def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m perf.kernels", description=DESCRIPTION)
    p.add_argument("--quick", action="store_true",
                   help="grid-10 only, N up to 10k, fewer repeats (under 2 minutes)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON (default perf/results/kernels-<date>-<host>.json)")
    p.add_argument("--models", help="comma-separated model names (perf.models)")
    p.add_argument("--policy-lens", type=_ints, help="comma-separated policy lengths")
    p.add_argument("--sizes", type=_ints, help="comma-separated population sizes")
    p.add_argument("--threads", type=_ints, help="comma-separated thread counts")
    p.add_argument("--latency-steps", type=int, help="target steps per latency figure")
    p.add_argument("--rss-agents", type=int, help="agents for the RSS measurement (0: skip)")
    p.add_argument("--no-pymdp", action="store_true", help="skip pymdp (no ratios)")
    args = p.parse_args(argv)
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.models:
        changes["models"] = tuple(m for m in args.models.split(",") if m)
        for m in changes["models"]:
            model_by_name(m)                        # fail early on a typo
    for field in ("policy_lens", "sizes", "threads", "latency_steps", "rss_agents"):
        value = getattr(args, field)
        if value is not None:
            changes[field] = value
    if args.no_pymdp:
        changes["pymdp"] = False
    return dataclasses.replace(plan, **changes), args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    shown = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m perf.kernels", *shown])
    log(f"plan: {plan}")
    results = run(plan, command)
    print(format_report(results))
    path = args.json or default_json_path(args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"wrote {path}")
    return 0
