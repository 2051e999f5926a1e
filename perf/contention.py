"""A run under CPU contention (issue 18's target): ``agentloop run`` with a tick log, CPU hogs
started some seconds into the clock for a while, then the log's figures: ticks that updated
nobody, ticks over their budget, stale agent-ticks, level switches, and agents updated per
tick in 2-second windows before, during and after the hogs.

    python -m perf.contention --agents 100000 --hz 10 --workers 2 --duration 40 \\
        --hogs 4 --hog-start 10 --hog-seconds 15

``--no-log`` runs without the tick log (whose writer thread competes with the loop for the GIL
and, under the hogs, for the CPU) and reads the run's ``--status-json`` lines instead: missed
ticks and stale agent-ticks per second, no per-tick figures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def run(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="agentloop-contention-"))
    log, status = folder / "run.mcap", folder / "status.jsonl"
    cmd = [sys.executable, "-m", "tools", "run", "--agents", str(args.agents), "--hz",
           str(args.hz), "--workers", str(args.workers), "--duration", str(args.duration),
           "--world", args.world]
    cmd += ["--status-json", str(status)] if args.no_log else ["--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    clock_start = None
    for line in proc.stdout:
        if line.startswith("ready in"):
            clock_start = time.monotonic()
            break
    if clock_start is None:
        print("the run ended before it was ready", file=sys.stderr)
        return 1
    time.sleep(args.hog_start)
    hogs = [multiprocessing.Process(target=_hog, args=(args.hog_seconds,))
            for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    for hog in hogs:
        hog.join()
    rest = proc.stdout.read()
    proc.wait()
    summary = [line for line in rest.splitlines() if line.startswith("summary:")]
    print("\n".join(summary))
    if args.no_log:
        report_status(status, args.agents, args.hog_start, args.hog_start + args.hog_seconds)
    else:
        report(log, args.hog_start, args.hog_start + args.hog_seconds)
    return proc.returncode


def report(path: Path, hog_from: float, hog_to: float) -> None:
    """Print the log's figures, with the hogs' interval in seconds of the run's clock."""
    from engine.ticklog.reader import TickLogReader

    with TickLogReader(str(path)) as reader:
        n = reader.header.n_agents
        rows = [(t.wall_time, t.duration_s, t.level, len(t.stale_agents),
                 t.timings.get("budget_s", np.nan)) for t in reader.ticks(0)]
    wall, dur, level, stale, budget = np.array(rows, dtype=float).T
    clock = wall - wall[0]
    updated = n - stale
    print(f"{len(rows)} ticks, {n:,} agents; hogs from {hog_from:g} s to {hog_to:g} s")
    print(f"ticks that updated nobody: {int((stale == n).sum())} "
          f"({100 * np.mean(stale == n):.1f}%)")
    print(f"ticks over their budget: {int((dur > budget).sum())} "
          f"({100 * np.mean(dur > budget):.1f}%)")
    print(f"stale agent-ticks: {100 * stale.sum() / (n * len(rows)):.1f}%; level switches "
          f"{int((np.diff(level) != 0).sum())}; levels "
          f"{dict(zip(*np.unique(level.astype(int), return_counts=True), strict=True))}")
    for lo in np.arange(0.0, clock[-1] + 1e-9, 2.0):
        inside = (clock >= lo) & (clock < lo + 2.0)
        if inside.any():
            tag = "hogs" if hog_from <= lo < hog_to else ""
            print(f"  {lo:5.1f}-{lo + 2:5.1f} s  updated/tick median "
                  f"{np.median(updated[inside]):8.0f}  tick p50 "
                  f"{1e3 * np.median(dur[inside]):5.1f} ms max {1e3 * dur[inside].max():6.1f} "
                  f"ms  {tag}")


def report_status(path: Path, n: int, hog_from: float, hog_to: float) -> None:
    """Print missed ticks and stale agent-ticks per 2-second window from a run's
    ``--status-json`` lines (cumulative figures, about one a second)."""
    import orjson

    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    ticks = np.array([line["tick"] for line in lines], dtype=float)
    missed = np.array([line["missed"] for line in lines], dtype=float)
    stale = np.array([sum(line["stale_agent_ticks"].values()) for line in lines], dtype=float)
    clock = np.array([line["time"] for line in lines]) - lines[0]["time"]
    print(f"{int(ticks[-1])} ticks; hogs from {hog_from:g} s to {hog_to:g} s; missed "
          f"{int(missed[-1])} ({100 * missed[-1] / max(1, ticks[-1]):.1f}%)")
    for lo in np.arange(0.0, clock[-1], 2.0):
        a = int(np.searchsorted(clock, lo, side="right")) - 1
        b = int(np.searchsorted(clock, lo + 2.0, side="right")) - 1
        if a < 0 or b <= a:
            continue
        dt = ticks[b] - ticks[a]
        tag = "hogs" if hog_from <= lo < hog_to else ""
        print(f"  {clock[a]:5.1f}-{clock[b]:5.1f} s  missed {int(missed[b] - missed[a]):3d} of "
              f"{int(dt):3d}  updated/tick {n - (stale[b] - stale[a]) / max(1.0, dt):8.0f}  "
              f"{tag}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.contention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=100_000)
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=float, default=40.0)
    p.add_argument("--world", default="grid")
    p.add_argument("--hogs", type=int, default=4)
    p.add_argument("--hog-start", type=float, default=10.0)
    p.add_argument("--hog-seconds", type=float, default=15.0)
    p.add_argument("--no-log", action="store_true",
                   help="no tick log: figures from --status-json, per second")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
