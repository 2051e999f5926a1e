"""GPU benchmark (issue 8): the array backend's throughput and the engine's device populations.

``python -m perf.gpu [--backend cupy|xp-numpy] [--agents N ...] [--quick]`` measures, on
grid-10 at policy_len 1 (float32 state, float64 intermediates as on the CPU):

* **throughput**: agent-steps per second of ``XpStepper.step`` at each population size, for the
  array path and the fused kernel (``--kernel``; the fused kernel at each ``--min-blocks``
  launch bound), side by side at each size, after
  warm-up ticks of the model's own generative process (so beliefs are in their steady state),
  timed with the device synchronised;
* **bandwidth**: the per-agent state each step must read and write (beliefs, q(pi), G, previous
  action, observations, actions), as bytes per second and as a share of the device's peak memory
  bandwidth (from its memory clock and bus width). The array code also moves intermediates, so
  this is a lower bound on the traffic;
* **engine**: ``Engine(model, N, backend=..., workers=0)`` paced at a fixed rate with no
  deadline (every agent every tick, as ``perf.engine.held_rate``): p50/p99 tick time against
  the budget, including the observation upload and the action download, for each kernel; and
  what copying the state into shared memory costs (the band of rows each tick copies, and
  every row at once, as a read of the state does).

With ``--backend xp-numpy`` the same code runs on the CPU (what CI can run); its figures are not
GPU figures. Writes ``perf/results/gpu-<date>-<host>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine import Engine, InferenceConfig
from engine.errors import ConfigError
from engine.kernels import fused
from engine.kernels.array_step import KERNEL_ENV, KERNELS, XpStepper
from engine.kernels.backends import array_module, resolve_backend
from perf.models import model_by_name
from perf.output import log, save_results
from world.process import ProcessWorld

MODEL = "grid-10"



def synchronize(xp: Any) -> None:
    """Wait for the device's queued work (nothing to wait for with NumPy)."""
    if xp is not np:
        xp.cuda.Device().synchronize()


def device_info(xp: Any) -> dict[str, Any]:
    """The device's name and peak memory bandwidth (GB/s), or the CPU's name with NumPy."""
    if xp is np:
        return {"device": f"CPU ({platform.processor() or platform.machine()}), NumPy",
                "peak_gbs": None}
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    peak = 2.0 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8 / 1e9
    return {"device": name, "peak_gbs": peak, "memory_bytes": int(props["totalGlobalMem"])}


def state_bytes_per_step(stepper: XpStepper) -> int:
    """Bytes of per-agent state one step reads and writes (a lower bound on its traffic)."""
    lay = stepper.layout
    item = np.dtype(lay.dtype).itemsize
    beliefs = 2 * lay.state_size * item                     # read the prior, write the posterior
    policies = 2 * lay.n_policies * item                    # write q(pi) and G
    actions = 3 * lay.n_factors * 8                         # read the last, write it and the new
    return beliefs + policies + actions + lay.n_modalities * 8 + 1   # observations, started


@contextlib.contextmanager
def kernel_choice(kernel: str, min_blocks: int | None, tree: str = "sparse") -> Any:
    """Within the block, ``kernel="auto"`` steppers (the engine's) take ``kernel``, and fused
    builds ``min_blocks`` as their launch bound and the ``tree`` walk ("sparse" or
    "generic")."""
    saved_env, saved = os.environ.get(KERNEL_ENV), (fused.MIN_BLOCKS, fused.SPARSE_TREE)
    os.environ[KERNEL_ENV] = kernel
    if min_blocks is not None:
        fused.MIN_BLOCKS = min_blocks
    fused.SPARSE_TREE = tree == "sparse"
    try:
        yield
    finally:
        fused.MIN_BLOCKS, fused.SPARSE_TREE = saved
        if saved_env is None:
            os.environ.pop(KERNEL_ENV, None)
        else:
            os.environ[KERNEL_ENV] = saved_env


Variant = tuple[str, int | None, str]


def variants(kernels: list[str], min_blocks: list[int], trees: list[str]) -> list[Variant]:
    """(kernel, launch bound, tree walk) to measure: the array path once, the fused kernel at
    each bound and tree walk."""
    out: list[Variant] = []
    for kernel in kernels:
        out += ([(kernel, b, t) for t in trees for b in min_blocks] if kernel == "fused"
                else [(kernel, None, "-")])
    return out


def throughput(backend: str, n: int, warm: int, ticks: int, kernel: str = "array",
               min_blocks: int | None = None, tree: str = "sparse") -> dict[str, Any]:
    xp = array_module(backend)
    model = model_by_name(MODEL)
    with kernel_choice(kernel, min_blocks, tree):
        stepper = XpStepper(model, n, InferenceConfig(), seed=0, xp=xp)
    world = ProcessWorld(model, n)
    obs = world.reset(0)
    for _ in range(warm):
        obs = world.step(np.asarray(_host(stepper.step(obs))))
    times = []
    for _ in range(ticks):
        obs_x = xp.asarray(obs)
        synchronize(xp)
        began = time.perf_counter()
        actions = stepper.step(obs_x, check=False)
        synchronize(xp)
        times.append(time.perf_counter() - began)
        obs = world.step(_host(actions))
    median = float(np.median(times))
    per_step = state_bytes_per_step(stepper)
    return {"agents": n, "kernel": kernel, "min_blocks": min_blocks, "tree": tree,
            "ticks": ticks, "step_s_median": median,
            "step_s_min": float(np.min(times)), "agent_steps_per_s": n / median,
            "state_bytes_per_agent_step": per_step, "state_gbs": n * per_step / median / 1e9}


def engine_rate(backend: str, n: int, hz: float, warm: int, ticks: int, kernel: str = "array",
                min_blocks: int | None = None, tree: str = "sparse") -> dict[str, Any]:
    """The engine with one device population, paced at ``hz`` with no deadline."""
    model = model_by_name(MODEL)
    world = ProcessWorld(model, n)
    obs = world.reset(0)
    walls = []
    with kernel_choice(kernel, min_blocks, tree), Engine(model, n, workers=0, backend=backend,
                                                         degrade=False) as engine:
        period = 1.0 / hz
        due = time.monotonic()
        for k in range(warm + ticks):
            began = time.perf_counter()
            actions = engine.step(obs)
            if k >= warm:
                walls.append(time.perf_counter() - began)
            obs = world.step(actions)
            due += period
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                due = now
        device = engine.devices[0]
        device.sync()
        bands = []
        for _ in range(device.refresh_every):
            began = time.perf_counter()
            device._refresh_band()
            synchronize(device.xp)
            bands.append(time.perf_counter() - began)
        device._dirty = True
        began = time.perf_counter()
        device.sync()
        whole_s = time.perf_counter() - began
    budget = 1.0 / hz
    p99 = float(np.percentile(walls, 99))
    return {"agents": n, "kernel": kernel, "min_blocks": min_blocks, "tree": tree, "hz": hz,
            "ticks": ticks,
            "budget_ms": 1e3 * budget, "refresh_band_ms": 1e3 * float(np.median(bands)),
            "refresh_every": device.refresh_every, "refresh_whole_ms": 1e3 * whole_s,
            "p50_ms": 1e3 * float(np.median(walls)), "p99_ms": 1e3 * p99,
            "held": p99 < budget}


def _host(a: Any) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


def format_report(r: dict[str, Any]) -> str:
    info = r["device"]
    lines = [f"agentloop GPU benchmark  {r['date']}  host {r['host']}",
             f"command: {r['command']}", f"device: {info['device']}" + (
                 f" (peak memory bandwidth {info['peak_gbs']:.0f} GB/s)" if info["peak_gbs"]
                 else ""), "",
             f"Throughput ({MODEL}, policy_len 1, backend {r['backend']}):"]
    array_rate = {row["agents"]: row["agent_steps_per_s"] for row in r["throughput"]
                  if row["kernel"] == "array"}
    for row in r["throughput"]:
        share = (f" = {100 * row['state_gbs'] / info['peak_gbs']:.1f}% of peak"
                 if info["peak_gbs"] else "")
        ratio = (f", {row['agent_steps_per_s'] / array_rate[row['agents']]:.2f}x the array path"
                 if row["kernel"] != "array" and row["agents"] in array_rate else "")
        lines.append(f"  {row['agents']:>10,} agents, {_variant(row):<27} "
                     f"{row['agent_steps_per_s'] / 1e6:8.2f}M agent-steps/s (step median "
                     f"{1e3 * row['step_s_median']:.2f} ms); state traffic "
                     f"{row['state_gbs']:.1f} GB/s{share}{ratio}")
    lines.append("")
    lines.append("Engine, one device population, every agent every tick (no deadline):")
    for row in r["engine"]:
        lines.append(f"  {row['agents']:>10,} agents at {row['hz']:g} Hz, {_variant(row)}: p50 "
                     f"{row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms (budget "
                     f"{row['budget_ms']:.1f} ms) held={row['held']}; state into shared "
                     f"memory: {row['refresh_band_ms']:.2f} ms a tick (1/{row['refresh_every']}"
                     f" of the rows), {row['refresh_whole_ms']:.1f} ms for all")
    return "\n".join(lines)


def _variant(row: dict[str, Any]) -> str:
    if row["kernel"] == "fused":
        return f"fused ({row.get('tree', 'sparse')}, bound {row['min_blocks']})"
    return row["kernel"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cupy", choices=("cupy", "xp-numpy"))
    parser.add_argument("--agents", type=int, nargs="+", default=None,
                        help="population sizes for the throughput rows")
    parser.add_argument("--engine-agents", type=int, default=None,
                        help="population of the engine row (default 1,000,000; 2,000 with "
                             "xp-numpy)")
    parser.add_argument("--hz", type=float, default=30.0)
    parser.add_argument("--kernel", nargs="+", choices=KERNELS, default=list(KERNELS),
                        help="the step's implementations to measure, side by side")
    parser.add_argument("--min-blocks", type=int, nargs="+", default=[fused.MIN_BLOCKS],
                        help="launch bounds of the fused kernel to sweep (blocks per SM)")
    parser.add_argument("--fused-tree", nargs="+", choices=("sparse", "generic"),
                        default=["sparse"], help="the fused kernel's tree walks to compare for "
                                                 "one sparse factor (grid models)")
    parser.add_argument("--quick", action="store_true", help="fewer ticks")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        resolve_backend(args.backend)
    except ConfigError as exc:                     # no CuPy or no GPU: one sentence
        print(f"python -m perf.gpu: {exc}", file=sys.stderr)
        return 2
    on_cpu = args.backend == "xp-numpy"
    sizes = args.agents or ([1_000, 4_000] if on_cpu else [10_000, 100_000, 1_000_000,
                                                          4_000_000])
    engine_n = args.engine_agents or (2_000 if on_cpu else 1_000_000)
    ticks, warm = (5, 3) if args.quick else (30, 20)
    xp = array_module(args.backend)
    result: dict[str, Any] = {
        "command": "python -m perf.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "backend": args.backend, "device": device_info(xp),
        "throughput": [], "engine": []}
    if on_cpu and "fused" in args.kernel and fused.host_compiler() is None:
        print("python -m perf.gpu: the fused kernel on xp-numpy needs a C++ compiler",
              file=sys.stderr)
        return 2
    measured = variants(args.kernel, args.min_blocks, args.fused_tree)
    for n in sizes:
        for kernel, bound, tree in measured:
            log(f"throughput, {n:,} agents, {kernel}"
                + (f" {tree} bound {bound}" if bound else ""))
            result["throughput"].append(throughput(args.backend, n, warm, ticks, kernel, bound,
                                                   tree))
    for kernel, bound, tree in variants(args.kernel, args.min_blocks[:1], args.fused_tree[:1]):
        log(f"engine, {engine_n:,} agents at {args.hz:g} Hz, {kernel}")
        result["engine"].append(engine_rate(args.backend, engine_n, args.hz, warm, ticks,
                                            kernel, bound, tree))
    print(format_report(result))
    save_results("gpu", result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
