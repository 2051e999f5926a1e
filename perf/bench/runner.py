"""One benchmark run: its stages in order, each with the load other processes put on the
machine meanwhile."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import socket
import time
from typing import Any

from perf.bench.config import SCHEMA, BenchConfig, count_units
from perf.bench.held import held
from perf.bench.probes import Probes
from perf.bench.progress import Progress
from perf.bench.stages import latency, machine, memory_and_startup, peers, quantization
from perf.bench.state import RunState
from perf.bench.throughput import throughput
from perf.bench.zoo import zoo


def _env_info(command: str, cfg: BenchConfig) -> dict[str, Any]:
    import numba

    from perf.kernels.provenance import git_state, versions

    return {
        "schema": SCHEMA, "command": command,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
                    "platform": platform.platform(), "processor": platform.processor(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": versions(), "git": git_state(), "config": dataclasses.asdict(cfg),
    }


class _NoLoad:
    cores = float("nan")

    def __enter__(self) -> _NoLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _other_load() -> Any:
    """perf.kernels.OtherLoad (cores other processes kept busy), or a stand-in without psutil."""
    try:
        from perf.kernels.timing import OtherLoad

        return OtherLoad()
    except ImportError:
        return _NoLoad()


def run(cfg: BenchConfig, command: str = "python -m perf", probes: Probes | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """Measure everything ``cfg`` asks for; the JSON-ready results (see :func:`validate_results`).

    ``probes`` makes the measurements (default :class:`Probes`); ``progress`` shows them.
    """
    progress = progress or Progress(count_units(cfg))
    probes = probes or Probes(cfg, progress)
    t0 = time.perf_counter()
    results = _env_info(command, cfg)
    state = RunState(cfg, probes, progress)
    stages: list[dict[str, Any]] = []
    state.raw["stages"] = stages
    try:
        wanted = {"latency": latency, "throughput": throughput, "zoo": zoo, "held": held,
                  "memory": memory_and_startup, "quantization": quantization}
        for stage in [peers, machine] + [f for name, f in wanted.items() if name in cfg.stages]:
            began = time.perf_counter()
            with _other_load() as load:
                stage(state)
            stages.append({"stage": stage.__name__, "seconds": time.perf_counter() - began,
                           "cores_busy_outside_this_process": load.cores})
    finally:
        if state.probes.jax_setup_info:
            state.raw["jax_setup"] = state.probes.jax_setup_info
        probes.close()
        progress.close()
    peer = state.raw.get("pymdp1") or {}
    if peer:
        results["versions"]["pymdp_1x"] = peer.get("pymdp")
        results["versions"]["jax"] = peer.get("jax")
        results["versions"]["jax_device"] = peer.get("device")
    results["peak"] = state.peak
    results["figures"] = state.figures
    results["not_measured"] = state.not_measured
    results["raw"] = state.raw
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["elapsed_s"] = time.perf_counter() - t0
    return results
