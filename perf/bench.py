"""The benchmark report: ``python -m perf`` (and ``agentloop bench``).

One command runs agentloop and its peers side by side in one process tree, alternating between
them repeat by repeat, and reports every figure as a median with its min and max over repeats
and as a ratio to pymdp 0.0.7.1 measured in the same run (``x`` times better: higher is better
for agentloop, whichever way the figure itself points):

* **step latency**: one agent, one full step (infer states, infer policies, select action), in
  process: agentloop's Numba kernel (1 thread), agentloop's NumPy float64 reference backend,
  pymdp 0.0.7.1's ``Agent`` and pymdp 1.x's jitted JAX ``Agent(batch_size=1)`` after warm-up;
  on every model of :attr:`BenchConfig.latency_models` (``grid-5/10/20`` and the multi-factor
  ``multi-3x3``, :mod:`perf.models`) at every policy length;
* **throughput**: agent-steps/s against population (1 ... 1,000,000; log-log plot) of the
  engine (:class:`engine.Engine`, ``workers`` 0, 1, 2, float32 model, uint16 beliefs in shared
  memory, full quality) and of pymdp 1.x batched (``batch_size=N``, as far as memory and time
  allow); pymdp 0.0.7.1 has no batching, so its throughput is ``1 / latency``;
* **largest population held** at 10, 30 and 60 Hz: the largest grid-10 population whose p99
  engine tick time stays under the budget at full quality (:func:`perf.engine.held_rate`,
  2 workers; growth search, then bisection); for pymdp 0.0.7.1 ``budget / latency``;
* **memory per agent**: the engine's shared-memory arrays, the RSS growth of a large in-process
  population (:func:`perf.kernels.rss_per_agent`), pymdp 0.0.7.1's RSS growth per ``Agent`` and
  pymdp 1.x's arrays per batch entry;
* **start-up**: creating N agents and finishing their first tick (:func:`perf.engine.startup`);
  pymdp 0.0.7.1 extrapolated from the time to create a few agents plus their latency;
* **quantization error**: decision agreement and KL of quantized against float64 beliefs
  (:func:`perf.quantization.run_case`);
* **share of the machine**: the FLOPs and bytes of one step (:func:`perf.kernels.step_cost`,
  from the model sizes and measured belief support) times the throughput, against the float64
  matmul GFLOP/s and copy GB/s measured in the same run (:func:`perf.kernels.measure_matmul`,
  :func:`perf.kernels.measure_bandwidth`).

It writes ``perf/results/<date>-<host>.json`` (``-quick`` added for ``--quick``), PNG plots
under ``perf/results/plots/``, and regenerates the section of ``perf/RESULTS.md`` between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` (a full run only, unless ``--update-md``);
:func:`readme_table` renders the README's table from a results dict. ``--compare OLD.json``
checks for regressions: any agentloop figure whose ratio to pymdp (or, where there is no
ratio, whose value) got more than 10% worse is printed and the exit code is 1.

A peer that cannot run is recorded as ``not measured: <reason>`` and the run goes on: pymdp 1.x
lives in its own venv (:mod:`perf.pymdp_jax`, created on first use), CuPy needs a GPU and a CuPy
backend. Progress goes to stderr (a bar on a terminal, plain lines otherwise).

This module imports only the standard library at import time (the measurements import NumPy,
Numba and the engine when they run), so building the command line stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = [
    "FULL", "QUICK", "BenchConfig", "Probes", "add_parsers", "compare", "format_comparison",
    "format_report", "main", "main_bench", "readme_table", "run", "update_marked_section",
    "validate_results",
]

SCHEMA = "agentloop-bench/1"
PERF_DIR = Path(__file__).resolve().parent
REPO_ROOT = PERF_DIR.parent
README_MD = REPO_ROOT / "README.md"
RESULTS_DIR = PERF_DIR / "results"
PLOTS_DIR = RESULTS_DIR / "plots"
RESULTS_MD = PERF_DIR / "RESULTS.md"
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"
#: ``--compare`` flags a figure that got worse by more than this fraction.
REGRESSION_THRESHOLD = 0.10
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2

#: Implementation slugs (``impl`` of a figure) and their display names.
AGENTLOOP, REFERENCE, PYMDP, PYMDP1 = "agentloop", "reference", "pymdp-0.0.7.1", "pymdp-1.x"
IMPL_NAMES = {AGENTLOOP: "agentloop (Numba, 1 thread)", REFERENCE: "agentloop NumPy reference",
              PYMDP: "pymdp 0.0.7.1", PYMDP1: "pymdp 1.x (JAX)", "engine-w0": "engine w=0",
              "engine-w1": "engine w=1", "engine-w2": "engine w=2"}
#: The stages of a run, in order (``--stages`` picks some; peers and machine always run).
STAGES = ("latency", "throughput", "held", "memory", "quantization")
HELD_MODEL = "grid-10"          # perf.engine.held_rate / startup / memory_per_agent use grid-10


def engine_impl(workers: int) -> str:
    """The slug of the engine with ``workers`` worker processes."""
    return f"engine-w{workers}"


# ------------------------------------------------------------------------------------ config
@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What one run measures and how long each measurement may take."""

    repeats: int = 3
    latency_models: tuple[str, ...] = ("grid-5", "grid-10", "grid-20", "multi-3x3")
    policy_lens: tuple[int, ...] = (1, 3)
    latency_steps: int = 300
    latency_min_steps: int = 3
    latency_budget_s: float = 1.0               # per implementation and repeat
    throughput_models: tuple[str, ...] = ("grid-10",)
    sizes: tuple[int, ...] = (1, 100, 10_000, 100_000, 1_000_000)
    workers: tuple[int, ...] = (0, 1, 2)
    max_agents_long_policy: int = 100_000       # policy_len >= 3 throughput cap
    reference_max_agents: int = 100
    warmup_steps: int = 3
    timed_steps: int = 3                        # at least; small populations take more
    max_timed_steps: int = 200
    min_timed_seconds: float = 0.3
    row_budget_s: float = 60.0                  # a throughput row estimated longer is skipped
    jax_memory_bytes: float = 12e9              # pymdp 1.x batches estimated larger skipped
    held_hz: tuple[float, ...] = (10.0, 30.0, 60.0)
    held_policy_len: int = 1
    held_ticks: int = 50
    held_start: int = 1000
    held_growth: int = 2
    held_limit: int = 1_048_576
    held_tolerance: float = 0.125               # bisect to within this fraction of the answer
    startup_agents: int = 1_000_000
    startup_workers: int = 2
    startup_repeats: int = 2
    memory_agents: int = 100_000                # engine shared-memory arrays
    rss_agents: int = 1_000_000                 # in-process RSS growth
    pymdp_agents: int = 30                      # pymdp 0.0.7.1 agents for its RSS / create time
    quant_cases: tuple[str, ...] = ("grid-10", "random-a", "random-b")
    quant_agents: int = 200
    quant_ticks: int = 300
    quant_timing_agents: int = 20_000
    matmul_n: int = 2000
    matmul_repeats: int = 3
    copy_mb: int = 256
    copy_repeats: int = 3
    stages: tuple[str, ...] = ("latency", "throughput", "held", "memory", "quantization")
    pymdp: bool = True
    pymdp1: bool = True
    install_pymdp1: bool = True
    seed: int = 0


FULL = BenchConfig()
#: ``--quick``: grid-10 at policy_len 1 only, N up to 1,000 (10,000 for the engine), one
#: shorter held-rate search per rate, smaller machine probes; under 2 minutes.
QUICK = BenchConfig(
    repeats=2, latency_models=("grid-10",), policy_lens=(1,), latency_steps=200,
    latency_budget_s=0.4, sizes=(1, 100, 1000, 10_000), min_timed_seconds=0.1,
    row_budget_s=15.0, jax_memory_bytes=2e9, held_ticks=15, held_start=4000, held_growth=4,
    held_limit=262_144, held_tolerance=1.0, startup_agents=100_000, startup_repeats=1,
    memory_agents=10_000, rss_agents=100_000, pymdp_agents=10, quant_cases=("grid-10",),
    quant_agents=50, quant_ticks=50, quant_timing_agents=5000, matmul_n=800, matmul_repeats=2,
    copy_mb=64, copy_repeats=2,
)


# ------------------------------------------------------------------------------------ progress
class Progress:
    """Where the run is, on stderr: a bar rewritten in place on a terminal, plain lines else."""

    def __init__(self, total: int, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def note(self, label: str) -> None:
        """Show ``label`` as what runs now (the count does not move)."""
        self._show(label)

    def step(self, label: str, units: int = 1) -> None:
        """Count ``units`` as done, then show ``label`` as what runs next."""
        self.done = min(self.total, self.done + units)
        self._show(label)

    def _show(self, label: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        clock = f"{int(elapsed // 60)}:{int(elapsed % 60):02d}"
        if self.tty:
            width = 24
            fill = round(width * self.done / self.total)
            self.stream.write(f"\r\x1b[K[{'#' * fill}{'.' * (width - fill)}] "
                              f"{self.done}/{self.total} {clock} {label}"[:200])
        else:
            self.stream.write(f"[bench {self.done:>3}/{self.total} {clock}] {label}\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (a warning, a skipped measurement)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(f"[bench] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def latency_pairs(cfg: BenchConfig) -> list[tuple[str, int]]:
    """The (model, policy_len) pairs whose latency is measured: every latency model at every
    policy length, and those the throughput, held-rate and start-up ratios need."""
    pairs = [(m, L) for m in cfg.latency_models for L in cfg.policy_lens]
    pairs += [(m, L) for m in cfg.throughput_models for L in cfg.policy_lens]
    pairs.append((HELD_MODEL, cfg.held_policy_len))
    return list(dict.fromkeys(pairs))


def count_units(cfg: BenchConfig) -> int:
    """How many progress units :func:`run` will count for ``cfg`` (one per measurement)."""
    on = set(cfg.stages)
    lat = len(latency_pairs(cfg)) * cfg.repeats if "latency" in on else 0
    thr = len(cfg.throughput_models) * len(cfg.policy_lens) * len(cfg.sizes) \
        if "throughput" in on else 0
    threads = len({1, min(2, os.cpu_count() or 1)})
    return (1 + threads + lat + thr + (len(cfg.held_hz) if "held" in on else 0)
            + (3 if "memory" in on else 0)
            + (len(cfg.quant_cases) if "quantization" in on else 0))


# ------------------------------------------------------------------------------------ stats
def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    k = len(s)
    return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])


def ratio_of(value: float | None, pymdp: float | None, better: str) -> float | None:
    """How many times better than pymdp ``value`` is (> 1: better), or None."""
    if value is None or pymdp is None or not value > 0 or not pymdp > 0:
        return None
    return pymdp / value if better == "lower" else value / pymdp


def make_figure(key: str, group: str, label: str, impl: str, unit: str, better: str,
                values: Sequence[float], pymdp: float | None = None, note: str = "",
                subject: str | None = None, compare_by: str | None = "auto") -> dict[str, Any]:
    """One figure of the report (a JSON-ready dict).

    ``values`` are the per-repeat values; the figure holds their median, min and max.
    ``pymdp`` is pymdp 0.0.7.1's value of the same figure in this run; ``ratio`` is
    :func:`ratio_of` the median. ``subject`` says whose figure it is (``agentloop`` figures are
    the ones ``--compare`` checks); ``compare_by`` is ``"ratio"``, ``"value"`` or None (never
    compared); ``"auto"``: ``"ratio"`` for agentloop figures, None for the others.
    """
    vals = [float(v) for v in values]
    median = _median(vals) if vals else None
    if subject is None:
        subject = "agentloop" if impl.startswith(("engine", AGENTLOOP)) else impl
    if compare_by == "auto":
        compare_by = "ratio" if subject == "agentloop" else None
    return {"key": key, "group": group, "label": label, "impl": impl, "unit": unit,
            "better": better, "median": median, "min": min(vals) if vals else None,
            "max": max(vals) if vals else None, "repeats": len(vals), "values": vals,
            "pymdp": pymdp, "ratio": ratio_of(median, pymdp, better), "note": note,
            "subject": subject, "compare_by": compare_by}


# ------------------------------------------------------------------------------------ probes
class JaxPeer:
    """The pymdp 1.x child process (:mod:`perf.pymdp_jax`), spoken to in JSON lines."""

    def __init__(self, python: Path, timeout_s: float = 600.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._tmp = tempfile.TemporaryDirectory(prefix="agentloop-bench-")
        self._stderr = open(Path(self._tmp.name) / "child.err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(python), str(PERF_DIR / "pymdp_jax.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, cwd=self._tmp.name)
        self.timeout_s = timeout_s
        self.models: dict[str, str] = {}
        self.base_rss = 0
        self.info = self.ask({"op": "hello"}, 120.0)
        self.base_rss = self.rss()

    def ask(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request, wait for its answer (``RuntimeError`` on failure or time-out)."""
        proc = self.proc
        if proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError(f"the pymdp 1.x child exited ({proc.returncode}){self._err()}")
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s or self.timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            why = "did not answer in time" if not ready else "exited"
            raise RuntimeError(f"the pymdp 1.x child {why} ({request.get('op')}){self._err()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(answer.get("error", "unknown error"))
        return answer

    def _err(self) -> str:
        try:
            self._stderr.seek(0)
            lines = [x for x in self._stderr.read().splitlines() if x.strip()]
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:300]}" if lines else ""

    def rss(self) -> int:
        """The child's resident memory, bytes (0 when unknown)."""
        try:
            with open(f"/proc/{self.proc.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def model_file(self, name: str) -> str:
        """Write ``name``'s model for the child once; its path."""
        if name not in self.models:
            from perf.models import model_by_name
            from perf.pymdp_jax import write_model

            m = model_by_name(name)
            path = str(Path(self._tmp.name) / f"{name}.npz")
            write_model(Path(path), list(m.A), list(m.B), list(m.C), list(m.D),
                        [list(x) for x in m.A_factor_list], list(m.control_fac_idx))
            self.models[name] = path
        return self.models[name]

    def close(self) -> None:
        """Stop the child (politely, then by force) and remove its files."""
        proc = self.proc
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                    proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, self._stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._tmp.cleanup()


@dataclasses.dataclass
class _Handle:
    """A population under throughput measurement."""

    impl: str
    n: int
    step: Callable[[], float]
    close: Callable[[], None]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class Probes:
    """Every measurement :func:`run` makes, one method each (tests replace them with fakes)."""

    def __init__(self, cfg: BenchConfig, progress: Progress) -> None:
        self.cfg = cfg
        self.progress = progress
        self._latency: dict[tuple[str, int, str], Any] = {}
        self.jax: JaxPeer | None = None
        self.jax_reason = ""
        self._jax_key: tuple[str, int, int] | None = None
        self.jax_setup_info: dict[str, Any] = {}

    # ---- availability
    def pymdp_reason(self) -> str:
        """Why pymdp 0.0.7.1 cannot be measured ("" when it can)."""
        try:
            from importlib.metadata import version

            import pymdp.agent  # noqa: F401
            v = version("inferactively-pymdp")
        except Exception as exc:  # noqa: BLE001 - any import failure is a reason
            return f"import pymdp failed ({type(exc).__name__}: {exc})"
        return "" if v == "0.0.7.1" else f"installed pymdp is {v}, not 0.0.7.1"

    def start_pymdp1(self) -> tuple[dict[str, Any] | None, str]:
        """Start the pymdp 1.x child (creating its venv if allowed): (its hello, reason)."""
        from perf.pymdp_jax import REQUIREMENT, VENV, ensure_venv, venv_python

        if self.cfg.install_pymdp1 and not venv_python().exists():
            self.progress.message(f"creating {VENV} and installing {REQUIREMENT!r} (once; a "
                                  "few minutes)")
        python, reason = ensure_venv(install=self.cfg.install_pymdp1)
        if python is None:
            return None, reason
        try:
            self.jax = JaxPeer(python)
        except (OSError, RuntimeError, ValueError) as exc:
            return None, f"the pymdp 1.x child failed to start: {exc}"
        return self.jax.info, ""

    def cupy_reason(self) -> str:
        """Why CuPy is not measured."""
        try:
            import cupy  # type: ignore[import-not-found]
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA install
            return f"import cupy failed ({type(exc).__name__}); no GPU backend to measure"
        try:
            devices = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as exc:  # noqa: BLE001 - no driver / no device
            return f"cupy imports but finds no CUDA device ({type(exc).__name__})"
        if devices < 1:
            return "cupy imports but finds no CUDA device"
        return ("a CUDA device is present, but agentloop has no CuPy kernels in this build "
                "(engine/kernels has the CPU backends only)")

    # ---- machine
    def machine(self, threads: int) -> dict[str, Any]:
        """float64 matmul GFLOP/s and copy GB/s on ``threads`` threads (perf.kernels)."""
        from perf.kernels import measure_bandwidth, measure_matmul

        return {"matmul": measure_matmul(self.cfg.matmul_n, threads, self.cfg.matmul_repeats),
                "bandwidth": measure_bandwidth(self.cfg.copy_mb, threads, self.cfg.copy_repeats)}

    # ---- latency
    def latency(self, model: str, policy_len: int, impl: str) -> list[float]:
        """One repeat of one agent's step latency: the step times, seconds."""
        key = (model, policy_len, impl)
        cfg = self.cfg
        if impl == PYMDP1:
            self._jax_setup(model, policy_len, 1)
            assert self.jax is not None
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < cfg.latency_steps:
                times += self.jax.ask({"op": "time", "steps": 10})["times"]
                if len(times) >= cfg.latency_min_steps and \
                        time.perf_counter() - start > cfg.latency_budget_s:
                    break
            return times
        import numpy as np

        from engine import Agents, InferenceConfig
        from perf.kernels import _pymdp_step_fn, _timed_steps
        from perf.models import model_by_name
        from world.process import ModelProcess

        if key not in self._latency:
            m = model_by_name(model)
            if impl == PYMDP:
                step = _pymdp_step_fn(m, policy_len)
            else:
                backend = "reference" if impl == REFERENCE else "numba"
                step = Agents(m, 1, InferenceConfig(policy_len=policy_len), seed=cfg.seed,
                              threads=1, backend=backend).step  # type: ignore[arg-type]
            world = ModelProcess(m, 1, np.random.default_rng(cfg.seed))
            self._latency[key] = (step, world)
        step, world = self._latency[key]
        times, _first = _timed_steps(step, world, cfg.latency_steps, cfg.latency_budget_s,
                                     cfg.latency_min_steps)
        return times

    def latency_done(self) -> None:
        """Drop the latency measurements' agents."""
        self._latency.clear()

    def _jax_setup(self, model: str, policy_len: int, n: int) -> dict[str, Any]:
        if self.jax is None:
            raise RuntimeError(self.jax_reason or "pymdp 1.x is not running")
        key = (model, policy_len, n)
        if self._jax_key != key:
            self._jax_key = None
            info = self.jax.ask({"op": "setup", "model": self.jax.model_file(model),
                                 "policy_len": policy_len, "n": n, "seed": self.cfg.seed})
            info["rss_bytes"] = self.jax.rss()
            self.jax_setup_info[f"{model}/L{policy_len}/N={n}"] = info
            self._jax_key = key
        return self.jax_setup_info[f"{model}/L{policy_len}/N={n}"]

    # ---- throughput
    def open_population(self, model: str, policy_len: int, n: int, impl: str) -> _Handle:
        """Create ``n`` agents of ``impl`` ready to step (engine, reference or pymdp 1.x)."""
        if impl == PYMDP1:
            info = self._jax_setup(model, policy_len, n)
            jax = self.jax
            assert jax is not None

            def jax_step() -> float:
                return float(jax.ask({"op": "time", "steps": 1})["times"][0])
            return _Handle(impl, n, jax_step, lambda: None, dict(info))
        import numpy as np

        from engine import Agents, Engine, InferenceConfig
        from perf.models import model_by_name
        from world.process import ModelProcess

        m = model_by_name(model)
        config = InferenceConfig(policy_len=policy_len)
        world = ModelProcess(m, n, np.random.default_rng(self.cfg.seed))
        if impl == REFERENCE:
            agents = Agents(m, n, config, seed=self.cfg.seed, backend="reference")
            stepper: Callable[[Any], Any] = agents.step
            closer: Callable[[], None] = lambda: None  # noqa: E731
        else:
            workers = int(impl.removeprefix("engine-w"))
            eng = Engine(m, n, workers=workers, config=config, seed=self.cfg.seed, degrade=False)
            eng.start()
            stepper, closer = eng.step, eng.close

        def step() -> float:
            obs = world.observe()
            t0 = time.perf_counter()
            actions = stepper(obs)
            elapsed = time.perf_counter() - t0
            world.advance(actions)
            return elapsed
        return _Handle(impl, n, step, closer)

    def step_cost(self, model: str, policy_len: int) -> dict[str, Any] | None:
        """FLOPs and bytes of one step (perf.kernels.step_cost, support from 2,000 agents)."""
        import numpy as np

        from engine import Agents, InferenceConfig
        from perf.kernels import belief_support, step_cost
        from perf.models import model_by_name
        from world.process import ModelProcess

        m = model_by_name(model)
        if len(m.num_states) != 1:
            return None
        rng = np.random.default_rng(self.cfg.seed)
        agents = Agents(m, 2000, InferenceConfig(policy_len=policy_len), seed=self.cfg.seed)
        world = ModelProcess(m, 2000, rng)
        for _ in range(10):
            world.advance(agents.step(world.observe()))
        return step_cost(agents, belief_support(agents, 2000, rng))

    # ---- held rates, memory, start-up, quantization
    def held(self, n: int, hz: float, policy_len: int) -> dict[str, Any]:
        """``n`` grid-10 agents at ``hz`` at full quality, 2 workers (perf.engine.held_rate)."""
        from perf.engine import held_rate

        return held_rate(n, hz, policy_len, 2, self.cfg.held_ticks)

    def engine_memory(self) -> dict[str, Any]:
        """Bytes per agent of the engine's shared-memory arrays (perf.engine)."""
        from perf.engine import memory_per_agent

        return memory_per_agent(self.cfg.memory_agents)

    def rss(self, policy_len: int) -> dict[str, Any]:
        """RSS growth per agent of an in-process grid-10 population (perf.kernels)."""
        from perf.kernels import rss_per_agent

        return rss_per_agent(HELD_MODEL, policy_len, self.cfg.rss_agents, self.cfg.seed)

    def pymdp_footprint(self, policy_len: int) -> dict[str, Any]:
        """pymdp 0.0.7.1: RSS growth per ``Agent`` and seconds to create one (a child)."""
        from perf.kernels import measure_in_child

        return measure_in_child(f"from perf.bench import _pymdp_child; _pymdp_child("
                                f"{HELD_MODEL!r}, {int(policy_len)}, {int(self.cfg.pymdp_agents)})",
                                "pymdp child")

    def startup(self) -> dict[str, Any]:
        """Create ``startup_agents`` and finish their first tick (perf.engine.startup)."""
        from perf.engine import startup

        return startup(self.cfg.startup_agents, self.cfg.startup_workers)

    def quantization(self, case_name: str) -> list[dict[str, Any]]:
        """One case of perf.quantization: a row per codec and the control."""
        from perf.quantization import CASES, run_case

        case = next(c for c in CASES if c.name == case_name)
        return run_case(case, self.cfg.quant_agents, self.cfg.quant_ticks, self.cfg.seed,
                        self.cfg.quant_timing_agents)

    def close(self) -> None:
        """Stop the pymdp 1.x child."""
        self._latency.clear()
        if self.jax is not None:
            self.jax.close()
            self.jax = None


def _pymdp_child(model_name: str, policy_len: int, k: int) -> None:
    """In a fresh process: create ``k`` pymdp 0.0.7.1 agents, step each once, print JSON."""
    import gc

    import numpy as np
    import psutil

    from engine import InferenceConfig
    from perf.models import model_by_name
    from world.process import ModelProcess

    proc = psutil.Process()
    model = model_by_name(model_name)
    config = InferenceConfig(policy_len=policy_len, dtype="float64")
    obs = ModelProcess(model, k, np.random.default_rng(0)).observe().copy()
    model.to_pymdp(config)                         # import pymdp, build what is shared
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    agents = [model.to_pymdp(config) for _ in range(k)]
    create_s = (time.perf_counter() - t0) / k
    for agent, o in zip(agents, obs, strict=True):
        agent.infer_states([int(x) for x in o])
        agent.infer_policies()
        agent.sample_action()
    gc.collect()
    rss1 = proc.memory_info().rss
    print(json.dumps({"agents": k, "policy_len": policy_len, "create_s_per_agent": create_s,
                      "bytes_per_agent": (rss1 - rss0) / k}))


# ------------------------------------------------------------------------------------ run
def _env_info(command: str, cfg: BenchConfig) -> dict[str, Any]:
    import numba

    from perf.kernels import _git_state, _versions

    return {
        "schema": SCHEMA, "command": command,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpu_count": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
                    "platform": platform.platform(), "processor": platform.processor(),
                    "loadavg_start": list(os.getloadavg())},
        "versions": _versions(), "git": _git_state(), "config": dataclasses.asdict(cfg),
    }


class _Run:
    """The state of one :func:`run`: figures, raw rows, peers not measured."""

    def __init__(self, cfg: BenchConfig, probes: Probes, progress: Progress) -> None:
        self.cfg, self.probes, self.progress = cfg, probes, progress
        self.figures: list[dict[str, Any]] = []
        self.not_measured: list[dict[str, str]] = []
        self.raw: dict[str, Any] = {"latency": [], "throughput": [], "held": [],
                                    "step_cost": [], "jax_setup": {}}
        self.pymdp_ok = False
        self.pymdp1_ok = False
        self.peak: dict[str, Any] = {}
        self.latency_s: dict[tuple[str, int, str], float] = {}

    def skip(self, what: str, reason: str) -> None:
        """Record ``what`` as not measured, and say so."""
        self.not_measured.append({"what": what, "reason": reason})
        self.progress.message(f"{what}: not measured: {reason}")

    def add(self, fig: dict[str, Any]) -> None:
        self.figures.append(fig)

    # ---- stages
    def peers(self) -> None:
        p = self.probes
        self.progress.note("peers: pymdp 0.0.7.1, pymdp 1.x (JAX), CuPy")
        if self.cfg.pymdp:
            reason = p.pymdp_reason()
            self.pymdp_ok = not reason
            if reason:
                self.skip("pymdp 0.0.7.1", reason + "; no ratios")
        else:
            self.skip("pymdp 0.0.7.1", "disabled (--no-pymdp); no ratios")
        if self.cfg.pymdp1:
            info, reason = p.start_pymdp1()
            self.pymdp1_ok = info is not None
            if info is None:
                p.jax_reason = reason
                self.skip("pymdp 1.x", reason)
            else:
                self.raw["pymdp1"] = info
        else:
            self.skip("pymdp 1.x", "disabled (--no-pymdp1)")
        self.skip("CuPy", p.cupy_reason())
        self.progress.step("machine: matmul and copy")

    def machine(self) -> None:
        cpus = os.cpu_count() or 1
        for t in sorted({1, min(2, cpus)}):
            self.progress.note(f"machine: float64 matmul and copy, {t} thread(s)")
            self.peak[str(t)] = self.probes.machine(t)
            mm, bw = self.peak[str(t)]["matmul"], self.peak[str(t)]["bandwidth"]
            self.add(make_figure(f"machine/matmul/{t}thr", "machine",
                                 f"float64 matmul, {t} thread(s)", "machine", "GFLOP/s",
                                 "higher", [mm["gflops_max"]], subject="machine"))
            self.add(make_figure(f"machine/copy/{t}thr", "machine", f"copy, {t} thread(s)",
                                 "machine", "GB/s", "higher", [bw["gbps_max"]],
                                 subject="machine"))
            self.progress.step("machine")

    def latency(self) -> None:
        cfg = self.cfg
        impls = [AGENTLOOP, REFERENCE] + ([PYMDP] if self.pymdp_ok else []) + \
            ([PYMDP1] if self.pymdp1_ok else [])
        for model, L in latency_pairs(cfg):
            per: dict[str, list[float]] = {i: [] for i in impls}
            steps: dict[str, int] = {i: 0 for i in impls}
            failed: dict[str, str] = {}
            for r in range(cfg.repeats):
                self.progress.note(f"latency {model} L={L} repeat {r + 1}/{cfg.repeats}")
                for impl in impls:
                    if impl in failed:
                        continue
                    try:
                        times = self.probes.latency(model, L, impl)
                    except Exception as exc:  # noqa: BLE001 - a peer's failure is a note
                        failed[impl] = f"{type(exc).__name__}: {exc}"[:300]
                        continue
                    per[impl].append(_median(times) * 1e6)
                    steps[impl] += len(times)
                self.progress.step(f"latency {model} L={L}")
            self.probes.latency_done()
            for impl, reason in failed.items():
                self.skip(f"latency {model} L={L} {impl}", reason)
            ref = _median(per[PYMDP]) if per.get(PYMDP) else None
            for impl in impls:
                if not per[impl]:
                    continue
                self.latency_s[(model, L, impl)] = _median(per[impl]) / 1e6
                note = f"{steps[impl]} steps over {len(per[impl])} repeats"
                if impl == PYMDP1:
                    note += "; jitted, batch_size=1, after warm-up"
                self.add(make_figure(
                    f"latency/{model}/L{L}/{impl}", "step latency",
                    f"step latency, {model}, policy_len {L}", impl, "us", "lower",
                    per[impl], ref, note))
                self.raw["latency"].append({"model": model, "policy_len": L, "impl": impl,
                                            "median_us_per_repeat": per[impl],
                                            "steps": steps[impl]})

    def _pymdp_rate(self, model: str, L: int) -> float | None:
        lat = self.latency_s.get((model, L, PYMDP))
        return 1.0 / lat if lat else None

    def throughput(self) -> None:
        cfg = self.cfg
        for model in cfg.throughput_models:
            for L in cfg.policy_lens:
                self._throughput_curve(model, L)

    def _throughput_curve(self, model: str, L: int) -> None:
        cfg = self.cfg
        cap = cfg.max_agents_long_policy if L >= 3 else max(cfg.sizes)
        per_agent_s: dict[str, tuple[int, float]] = {}  # (n, step time per agent) measured
        jax_rss_per_agent = 0.0
        jax_sizes: list[tuple[int, float]] = []     # (n, child RSS after its setup)
        jax_off = "" if self.pymdp1_ok else "pymdp 1.x not running"
        pymdp_rate = self._pymdp_rate(model, L)
        last_rows: dict[str, dict[str, Any]] = {}
        for n in cfg.sizes:
            label = f"throughput {model} L={L} N={n:,}"
            if n > cap:
                self.raw["throughput"].append({"model": model, "policy_len": L, "n": n,
                                               "skipped": f"policy_len {L} capped at {cap:,}"})
                self.progress.step(label + " (skipped: cap)")
                continue
            impls = [engine_impl(w) for w in cfg.workers]
            if n <= cfg.reference_max_agents:
                impls.append(REFERENCE)
            if not jax_off:
                impls.append(PYMDP1)
            handles: dict[str, _Handle] = {}
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
                    limit = _jax_memory_limit(cfg.jax_memory_bytes)
                    if mem > limit:
                        why = (f"estimated {mem / 1e9:.1f} GB > pymdp 1.x memory limit "
                               f"{limit / 1e9:.1f} GB")
                if why:
                    self.raw["throughput"].append({"model": model, "policy_len": L, "n": n,
                                                   "impl": impl, "skipped": why})
                    if impl == PYMDP1:
                        jax_off = why
                        self.skip(f"pymdp 1.x throughput {model} L={L} N>={n:,}", why)
                    continue
                self.progress.note(f"{label}: creating {IMPL_NAMES.get(impl, impl)}")
                try:
                    handles[impl] = self.probes.open_population(model, L, n, impl)
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
                    self.skip(f"throughput {model} L={L} N={n:,} {impl}", reason)
                    if impl == PYMDP1:
                        jax_off = reason
            rates: dict[str, list[float]] = {i: [] for i in handles}
            timed: dict[str, int] = {i: 0 for i in handles}
            est_step: dict[str, float] = {}
            try:
                for r in range(cfg.repeats):
                    self.progress.note(f"{label} repeat {r + 1}/{cfg.repeats}")
                    for impl, h in handles.items():
                        if r == 0:
                            warm = [h.step() for _ in range(max(1, cfg.warmup_steps))]
                            est_step[impl] = max(min(warm), 1e-7)
                        k = max(cfg.timed_steps, min(cfg.max_timed_steps,
                                                     int(cfg.min_timed_seconds / est_step[impl])))
                        times = [h.step() for _ in range(k)]
                        timed[impl] += k
                        rates[impl].append(n / _median(times))
            finally:
                for h in handles.values():
                    h.close()
            for impl, h in handles.items():
                if not rates[impl]:
                    continue
                per_agent_s[impl] = (n, 1.0 / _median(rates[impl]))
                if impl == PYMDP1:
                    jax_sizes.append((n, float(h.extra.get("rss_bytes", 0.0))))
                    jax_rss_per_agent = _jax_bytes_per_agent(
                        jax_sizes, float(h.extra.get("bytes_per_agent", 0.0)))
                row = {"model": model, "policy_len": L, "n": n, "impl": impl,
                       "steps_per_s_per_repeat": rates[impl], "timed_steps": timed[impl],
                       **({"jax": h.extra} if h.extra else {})}
                self.raw["throughput"].append(row)
                last_rows[impl] = row
                note = f"{timed[impl]} timed steps over {len(rates[impl])} repeats"
                if impl == PYMDP1:
                    note += "; jitted, batch_size=N, after warm-up"
                self.add(make_figure(
                    f"throughput/{model}/L{L}/N={n}/{impl}", "throughput",
                    f"agent-steps/s, {model}, policy_len {L}, {n:,} agents", impl, "steps/s",
                    "higher", rates[impl], pymdp_rate,
                    note + ("; pymdp 0.0.7.1 = 1/latency (no batching)" if pymdp_rate else "")))
            self.progress.step(label)
        self._peak_share(model, L, last_rows, pymdp_rate)

    def _peak_share(self, model: str, L: int, last_rows: dict[str, dict[str, Any]],
                    pymdp_rate: float | None) -> None:
        if not last_rows or not self.peak:
            return
        try:
            cost = self.probes.step_cost(model, L)
        except Exception as exc:  # noqa: BLE001
            self.skip(f"step cost {model} L={L}", f"{type(exc).__name__}: {exc}")
            return
        if cost is None:
            self.skip(f"% of machine limits {model} L={L}",
                      "the step cost model (perf.kernels.step_cost) covers one-factor models")
            return
        self.raw["step_cost"].append({"model": model, "policy_len": L, **cost})
        top = str(max(int(t) for t in self.peak))
        for impl, row in last_rows.items():
            if impl.startswith("engine"):
                workers = int(impl.removeprefix("engine-w"))
                threads = str(min(int(top), workers)) if workers else top   # w=0: all threads
            else:
                threads = "1" if impl == REFERENCE else top         # NumPy: one; JAX: all
            mm = self.peak[threads]["matmul"]["gflops_max"]
            bw = self.peak[threads]["bandwidth"]["gbps_max"]
            pymdp_mm = self.peak["1"]["matmul"]["gflops_max"]
            pymdp_bw = self.peak["1"]["bandwidth"]["gbps_max"]
            n = row["n"]
            for what, unit_cost, peak, pymdp_peak, name in (
                    ("flops", cost["flops_total"], mm * 1e9, pymdp_mm * 1e9, "FLOP"),
                    ("bandwidth", cost["bytes_total"], bw * 1e9, pymdp_bw * 1e9, "memory bw")):
                vals = [100.0 * r * unit_cost / peak for r in row["steps_per_s_per_repeat"]]
                ref = 100.0 * pymdp_rate * unit_cost / pymdp_peak if pymdp_rate else None
                self.add(make_figure(
                    f"peak/{model}/L{L}/{what}/{impl}", "share of machine",
                    f"% of measured {name} limit, {model}, policy_len {L}, {n:,} agents", impl,
                    "%", "higher", vals, ref,
                    f"{unit_cost:.4g} {'FLOP' if what == 'flops' else 'B'}/step "
                    f"(perf.kernels.step_cost) vs {threads}-thread peak"))

    def held(self) -> None:
        cfg = self.cfg
        L = cfg.held_policy_len
        lat = self.latency_s.get((HELD_MODEL, L, PYMDP))
        for hz in cfg.held_hz:
            label = f"largest population held at {hz:g} Hz ({HELD_MODEL}, L={L})"
            tried: list[dict[str, Any]] = []

            def probe(n: int, hz: float = hz, tried: list[dict[str, Any]] = tried,
                      label: str = label) -> bool:
                self.progress.note(f"{label}: trying {n:,}")
                row = self.probes.held(n, hz, L)
                tried.append({k: row.get(k) for k in ("agents", "p50_ms", "p99_ms", "held")})
                return bool(row["held"])

            try:
                best, limited = largest_held(probe, cfg.held_start, cfg.held_growth,
                                             cfg.held_limit, cfg.held_tolerance)
            except Exception as exc:  # noqa: BLE001
                self.skip(label, f"{type(exc).__name__}: {exc}"[:300])
                self.progress.step(label)
                continue
            self.raw["held"].append({"hz": hz, "policy_len": L, "largest_held": best,
                                     "limited": limited, "tried": tried})
            budget_s = 1.0 / hz
            ref = float(math.floor(budget_s / lat)) if lat else None
            self.add(make_figure(
                f"held/{HELD_MODEL}/L{L}/{hz:g}Hz/{engine_impl(2)}", "held rate",
                f"largest population, p99 tick < {1e3 * budget_s:.1f} ms ({hz:g} Hz), "
                f"{HELD_MODEL}, policy_len {L}", engine_impl(2), "agents", "higher", [best], ref,
                f"one search ({len(tried)} runs of {cfg.held_ticks} ticks), full quality"
                + ("; at the search limit" if limited else "")
                + ("; pymdp 0.0.7.1 = budget / latency" if ref is not None else "")))
            jax_best = self._jax_held(budget_s, L)
            if jax_best is not None:
                self.add(make_figure(
                    f"held/{HELD_MODEL}/L{L}/{hz:g}Hz/{PYMDP1}", "held rate",
                    f"largest population, step < {1e3 * budget_s:.1f} ms ({hz:g} Hz), "
                    f"{HELD_MODEL}, policy_len {L}", PYMDP1, "agents", "higher", [jax_best], ref,
                    "largest measured throughput size whose median step fits the budget"))
            self.progress.step(label)

    def _jax_held(self, budget_s: float, L: int) -> int | None:
        rows = [r for r in self.raw["throughput"]
                if r.get("impl") == PYMDP1 and r["model"] == HELD_MODEL
                and r["policy_len"] == L and "steps_per_s_per_repeat" in r]
        if not rows:
            return None
        fits = [r["n"] for r in rows if r["n"] / _median(r["steps_per_s_per_repeat"]) < budget_s]
        return max(fits) if fits else 0

    def memory_and_startup(self) -> None:
        cfg = self.cfg
        L = cfg.held_policy_len
        pymdp_fp: dict[str, Any] | None = None
        if self.pymdp_ok:
            self.progress.note(f"memory: pymdp 0.0.7.1, {cfg.pymdp_agents} agents")
            try:
                pymdp_fp = self.probes.pymdp_footprint(L)
                self.raw["pymdp_footprint"] = pymdp_fp
            except Exception as exc:  # noqa: BLE001
                self.skip("pymdp 0.0.7.1 memory and create time", str(exc)[:300])
        ref_bytes = pymdp_fp["bytes_per_agent"] if pymdp_fp else None
        pymdp_note = f"; pymdp 0.0.7.1: RSS growth of {cfg.pymdp_agents} Agents" \
            if pymdp_fp else ""
        self.progress.step(f"memory: engine arrays, {cfg.memory_agents:,} agents")
        try:
            mem = self.probes.engine_memory()
            self.raw["engine_memory"] = mem
            self.add(make_figure(
                f"memory/{HELD_MODEL}/L1/engine-arrays", "memory per agent",
                f"bytes per agent, engine shared-memory arrays, {HELD_MODEL}", engine_impl(2),
                "B", "lower", [mem["per_agent_bytes"]], ref_bytes,
                f"model {mem['shared_model_bytes']:,} B once" + pymdp_note))
        except Exception as exc:  # noqa: BLE001
            self.skip("engine memory per agent", str(exc)[:300])
        self.progress.note(f"memory: RSS of {cfg.rss_agents:,} in-process agents")
        try:
            rss = self.probes.rss(L)
            self.raw["rss"] = rss
            self.add(make_figure(
                f"memory/{HELD_MODEL}/L{L}/rss", "memory per agent",
                f"bytes per agent, RSS growth of {rss['n']:,} in-process agents after a step, "
                f"{HELD_MODEL}", AGENTLOOP, "B", "lower", [rss["bytes_per_agent_after_step"]],
                ref_bytes, "perf.kernels.rss_per_agent" + pymdp_note))
        except Exception as exc:  # noqa: BLE001
            self.skip("RSS per agent", str(exc)[:300])
        jax_rows = [r for r in self.raw["throughput"] if r.get("impl") == PYMDP1
                    and r["model"] == HELD_MODEL and r["policy_len"] == L and "jax" in r]
        if jax_rows:
            top = max(jax_rows, key=lambda r: r["n"])
            self.add(make_figure(
                f"memory/{HELD_MODEL}/L{L}/{PYMDP1}", "memory per agent",
                f"bytes per agent, pymdp 1.x arrays (batch of {top['n']:,}), {HELD_MODEL}",
                PYMDP1, "B", "lower", [top["jax"]["bytes_per_agent"]], ref_bytes,
                "A, B, C, D, ... broadcast per batch entry; temporaries not counted"))
        self.progress.step(f"start-up: {cfg.startup_agents:,} agents")
        runs: list[dict[str, Any]] = []
        for r in range(cfg.startup_repeats):
            self.progress.note(f"start-up: {cfg.startup_agents:,} agents, repeat {r + 1}")
            try:
                runs.append(self.probes.startup())
            except Exception as exc:  # noqa: BLE001
                self.skip("start-up", str(exc)[:300])
                break
        lat = self.latency_s.get((HELD_MODEL, L, PYMDP))

        def pymdp_startup(n: int) -> float | None:
            if pymdp_fp is None or lat is None:
                return None
            return n * (pymdp_fp["create_s_per_agent"] + lat)

        if runs:
            self.raw["startup"] = runs
            n = cfg.startup_agents
            self.add(make_figure(
                f"startup/{HELD_MODEL}/L{L}/N={n}/{engine_impl(cfg.startup_workers)}",
                "start-up", f"seconds to create {n:,} agents and finish their first tick",
                engine_impl(cfg.startup_workers), "s", "lower",
                [x["first_tick_s"] for x in runs], pymdp_startup(n),
                "pymdp 0.0.7.1 extrapolated: N x (create one Agent + one step)"
                if pymdp_fp else ""))
        if jax_rows:
            top = max(jax_rows, key=lambda r: r["n"])
            j = top["jax"]
            self.add(make_figure(
                f"startup/{HELD_MODEL}/L{L}/N={top['n']}/{PYMDP1}", "start-up",
                f"seconds to create {top['n']:,} agents and finish their first tick", PYMDP1,
                "s", "lower", [j["create_s"] + j["compile_s"]], pymdp_startup(top["n"]),
                "pymdp 1.x: Agent(batch_size=N) + first jitted step (compile included)"))
        self.progress.step("quantization")

    def quantization(self) -> None:
        for case in self.cfg.quant_cases:
            self.progress.note(f"quantization {case}: {self.cfg.quant_agents} agents x "
                               f"{self.cfg.quant_ticks} ticks")
            try:
                rows = self.probes.quantization(case)
            except Exception as exc:  # noqa: BLE001
                self.skip(f"quantization {case}", str(exc)[:300])
                self.progress.step(f"quantization {case}")
                continue
            self.raw.setdefault("quantization", []).extend(rows)
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
                self.add({**fig, "digits": 6})
                self.add(make_figure(
                    f"quantization/{case}/L{L}/{codec}/kl", "quantization",
                    f"mean KL(float64 || {codec}) per factor (largest), {case}", codec, "nats",
                    "lower", [max(row["kl_mean"])], None, note, subject="agentloop",
                    compare_by=None))
            self.progress.step(f"quantization {case}")


def _jax_memory_limit(configured: float) -> float:
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


class _NoLoad:
    cores = float("nan")

    def __enter__(self) -> _NoLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _other_load() -> Any:
    """perf.kernels.OtherLoad (cores other processes kept busy), or a stand-in without psutil."""
    try:
        from perf.kernels import OtherLoad

        return OtherLoad()
    except ImportError:
        return _NoLoad()


def largest_held(held: Callable[[int], bool], start: int, growth: int, limit: int,
                 tolerance: float) -> tuple[int, bool]:
    """The largest population ``held(n)`` accepts: grow from ``start`` by ``growth`` up to
    ``limit``, then bisect between the last held and the first missed size until the gap is
    within ``tolerance`` of the answer (halve from ``start`` if ``start`` is not held).

    Returns ``(largest held, whether the search stopped at the limit)``.
    """
    growth = max(2, int(growth))
    n = max(1, int(start))
    if held(n):
        lo = n
        while True:
            nxt = lo * growth
            if nxt > limit:
                return lo, True
            if not held(nxt):
                hi = nxt
                break
            lo = nxt
    else:
        hi, lo = n, 0
        while hi > 1:
            if held(hi // 2):
                lo = hi // 2
                break
            hi //= 2
        if lo == 0:
            return 0, False
    while hi - lo > max(1, int(lo * tolerance)):
        mid = (lo + hi) // 2
        if held(mid):
            lo = mid
        else:
            hi = mid
    return lo, False


def run(cfg: BenchConfig, command: str = "python -m perf", probes: Probes | None = None,
        progress: Progress | None = None) -> dict[str, Any]:
    """Measure everything ``cfg`` asks for; the JSON-ready results (see :func:`validate_results`).

    ``probes`` makes the measurements (default :class:`Probes`); ``progress`` shows them.
    """
    progress = progress or Progress(count_units(cfg))
    probes = probes or Probes(cfg, progress)
    t0 = time.perf_counter()
    results = _env_info(command, cfg)
    state = _Run(cfg, probes, progress)
    stages: list[dict[str, Any]] = []
    state.raw["stages"] = stages
    try:
        wanted = {"latency": state.latency, "throughput": state.throughput,
                  "held": state.held, "memory": state.memory_and_startup,
                  "quantization": state.quantization}
        for stage in [state.peers, state.machine] + [f for name, f in wanted.items()
                                                     if name in cfg.stages]:
            began = time.perf_counter()
            with _other_load() as load:
                stage()
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


_FIGURE_KEYS = ("key", "group", "label", "impl", "unit", "better", "median", "min", "max",
                "repeats", "pymdp", "ratio", "subject", "compare_by")


def validate_results(results: Any) -> list[str]:
    """Problems with a results dict's shape (empty when it is a valid report)."""
    problems: list[str] = []
    if not isinstance(results, dict):
        return ["not a JSON object"]
    for key in ("schema", "command", "started", "host", "figures", "not_measured"):
        if key not in results:
            problems.append(f"missing {key!r}")
    if results.get("schema") not in (None, SCHEMA):
        problems.append(f"schema {results.get('schema')!r} is not {SCHEMA!r}")
    figures = results.get("figures", [])
    if not isinstance(figures, list):
        return problems + ["'figures' is not a list"]
    seen: set[str] = set()
    for i, fig in enumerate(figures):
        if not isinstance(fig, dict):
            problems.append(f"figures[{i}] is not an object")
            continue
        missing = [k for k in _FIGURE_KEYS if k not in fig]
        if missing:
            problems.append(f"figures[{i}] ({fig.get('key')}) lacks {', '.join(missing)}")
        if fig.get("key") in seen:
            problems.append(f"figure key {fig.get('key')!r} repeats")
        seen.add(fig.get("key"))
        if fig.get("better") not in ("higher", "lower"):
            problems.append(f"figures[{i}] better={fig.get('better')!r}")
    for i, nm in enumerate(results.get("not_measured", [])):
        if not (isinstance(nm, dict) and "what" in nm and "reason" in nm):
            problems.append(f"not_measured[{i}] needs 'what' and 'reason'")
    return problems


# ------------------------------------------------------------------------------------ compare
def compare(old: dict[str, Any], new: dict[str, Any],
            threshold: float = REGRESSION_THRESHOLD) -> dict[str, list[dict[str, Any]]]:
    """Agentloop figures of ``old`` that got more than ``threshold`` worse in ``new``.

    A figure is compared by its ratio to pymdp 0.0.7.1 (``compare_by == "ratio"``: worse means
    a smaller ratio) or by its value (``"value"``, in its ``better`` direction). Returns
    ``regressions`` (each with old, new and the change), ``missing`` (in old, not comparable
    in new: absent, or its ratio or value not measured) and ``compared`` (the figures checked).
    """
    new_by_key = {f.get("key"): f for f in new.get("figures", []) if isinstance(f, dict)}
    out: dict[str, list[dict[str, Any]]] = {"regressions": [], "missing": [], "compared": []}
    for fig in old.get("figures", []):
        if not isinstance(fig, dict):
            continue
        how = fig.get("compare_by")
        if how not in ("ratio", "value"):
            continue
        key = fig.get("key")
        field = "ratio" if how == "ratio" else "median"
        old_v = fig.get(field)
        if not isinstance(old_v, (int, float)) or not old_v > 0:
            continue
        cur = new_by_key.get(key)
        new_v = cur.get(field) if cur else None
        if not isinstance(new_v, (int, float)):
            why = "absent from the new results" if cur is None else f"no {field} in the new run"
            out["missing"].append({"key": key, "label": fig.get("label", ""), "why": why})
            continue
        better = "higher" if how == "ratio" else fig.get("better", "higher")
        if better == "higher":
            worse_by = (old_v - new_v) / old_v
        else:
            worse_by = (new_v - old_v) / old_v
        item = {"key": key, "label": fig.get("label", ""), "impl": fig.get("impl", ""),
                "by": field, "old": old_v, "new": new_v, "worse_by": worse_by}
        out["compared"].append(item)
        if worse_by > threshold:
            out["regressions"].append(item)
    return out


def format_comparison(cmp: dict[str, list[dict[str, Any]]], old_name: str = "old",
                      threshold: float = REGRESSION_THRESHOLD) -> str:
    """The printed verdict of :func:`compare`."""
    lines = [f"Regression check against {old_name}: {len(cmp['compared'])} figures compared, "
             f"{len(cmp['regressions'])} more than {100 * threshold:.0f}% worse, "
             f"{len(cmp['missing'])} missing"]
    for r in cmp["regressions"]:
        what = "ratio vs pymdp" if r["by"] == "ratio" else "value"
        lines.append(f"  WORSE {100 * r['worse_by']:5.1f}%  {r['key']}  ({what} "
                     f"{_num(r['old'])} -> {_num(r['new'])})  {r['label']}")
    for m in cmp["missing"]:
        lines.append(f"  missing  {m['key']}: {m['why']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ report
def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    ax = abs(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if ax >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    if ax and ax < 1e-3:
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.3g}x"


def _value(fig: dict[str, Any]) -> str:
    if fig.get("median") is None:
        return "-"
    digits = int(fig.get("digits", 3))
    text = f"{_num(fig['median'], digits)} {fig['unit']}"
    if fig["repeats"] > 1:
        text += f" [{_num(fig['min'], digits)}-{_num(fig['max'], digits)}]"
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|")
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _figure_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for f in results.get("figures", []):
        rows.append([f["group"], f["label"], IMPL_NAMES.get(f["impl"], f["impl"]), _value(f),
                     "-" if f.get("pymdp") is None else f"{_num(f['pymdp'])} {f['unit']}",
                     _ratio(f.get("ratio"))])
    return rows


def format_report(results: dict[str, Any]) -> str:
    """The printed report: every figure, median [min-max], pymdp 0.0.7.1 and the ratio."""
    git = results.get("git", {})
    out = [f"agentloop benchmark report  {results['started']}  host {results['host']}",
           f"command: {results['command']}",
           f"git {git.get('commit')} dirty={git.get('dirty')}  versions {results.get('versions')}",
           f"repeats {results.get('config', {}).get('repeats')}, alternating between "
           "implementations; ratio = times better than pymdp 0.0.7.1 in this run", ""]
    out.append(_table(["group", "figure", "implementation", "median [min-max]",
                       "pymdp 0.0.7.1", "vs pymdp"], _figure_rows(results)))
    if results.get("not_measured"):
        out += ["", "Not measured:"]
        out += [f"  {nm['what']}: not measured: {nm['reason']}" for nm in results["not_measured"]]
    if results.get("plots"):
        out += ["", "Plots: " + ", ".join(results["plots"])]
    if "elapsed_s" in results:
        out.append(f"\nelapsed {results['elapsed_s']:.0f} s")
    return "\n".join(out)


def _find(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((f for f in results.get("figures", []) if f.get("key") == key), None)


def _largest(results: dict[str, Any], prefix: str, impl: str) -> dict[str, Any] | None:
    """The figure ``prefix/N=<n>/impl`` with the largest n."""
    best: tuple[int, dict[str, Any]] | None = None
    for f in results.get("figures", []):
        key = f.get("key", "")
        if key.startswith(prefix + "/N=") and key.endswith("/" + impl):
            n = int(key[len(prefix) + 3:].split("/")[0])
            if best is None or n > best[0]:
                best = (n, f)
    return best[1] if best else None


def readme_table(results: dict[str, Any]) -> str:
    """The README's results table (Markdown), generated from a results dict: the headline
    figures, agentloop against pymdp 0.0.7.1 (the ratio) and pymdp 1.x, and what was not
    measured."""
    rows: list[list[str]] = []

    def row(what: str, ours: dict[str, Any] | None, jax: dict[str, Any] | None,
            fmt: Callable[[dict[str, Any]], str] = _value) -> None:
        if ours is None:
            return
        pymdp = "-" if ours.get("pymdp") is None else \
            fmt({**ours, "median": ours["pymdp"], "repeats": 1})
        rows.append([what, fmt(ours), pymdp, _ratio(ours.get("ratio")),
                     fmt(jax) if jax else "-"])

    w2 = engine_impl(2)
    lens = sorted({f["key"].split("/")[2] for f in results.get("figures", [])
                   if f["key"].startswith(f"latency/{HELD_MODEL}/")})
    for L in lens:
        row(f"step latency, one agent, {HELD_MODEL} {L.replace('L', 'policy_len ')}",
            _find(results, f"latency/{HELD_MODEL}/{L}/{AGENTLOOP}"),
            _find(results, f"latency/{HELD_MODEL}/{L}/{PYMDP1}"))
    for L in sorted({f["key"].split("/")[2] for f in results.get("figures", [])
                     if f["key"].startswith(f"throughput/{HELD_MODEL}/")}):
        ours = _largest(results, f"throughput/{HELD_MODEL}/{L}", w2)
        jax = _largest(results, f"throughput/{HELD_MODEL}/{L}", PYMDP1)
        if ours:
            n = ours["key"].split("/")[3][2:]
            jn = f" ({int(jax['key'].split('/')[3][2:]):,} agents)" if jax else ""
            row(f"agent-steps/s, {int(n):,} agents, {HELD_MODEL} "
                f"{L.replace('L', 'policy_len ')}, 2 workers", ours, jax)
            if jax:
                rows[-1][4] = _value(jax) + jn
    for f in results.get("figures", []):
        if f["group"] == "held rate" and f["impl"] == w2:
            hz = f["key"].split("/")[3]
            jax = _find(results, f["key"].rsplit("/", 1)[0] + f"/{PYMDP1}")
            row(f"largest population at {hz.replace('Hz', ' Hz')} (p99 tick under budget)", f,
                jax, lambda x: f"{x['median']:,.0f}")
            if jax:
                rows[-1][4] += " (of the sizes measured)"
    mem = _find(results, f"memory/{HELD_MODEL}/L1/engine-arrays")
    row("memory per agent (engine arrays; model once)", mem,
        _find(results, f"memory/{HELD_MODEL}/L1/{PYMDP1}"), lambda x: f"{x['median']:,.0f} B")
    for f in results.get("figures", []):
        if f["group"] == "start-up" and f["impl"] != PYMDP1:
            n = int(f["key"].split("/")[3][2:])
            jax = next((g for g in results["figures"] if g["group"] == "start-up"
                        and g["impl"] == PYMDP1), None)
            row(f"start-up: {n:,} agents to their first tick", f, jax)
            if jax:
                rows[-1][4] = _value(jax) + f" ({int(jax['key'].split('/')[3][2:]):,} agents)"
    q = _find(results, f"quantization/{HELD_MODEL}/L1/uint16/agreement")
    if q:
        rows.append(["decisions unchanged by uint16 beliefs (vs float64)",
                     f"{q['median']:.3f}%", "float64", "-", "-"])
    for what in ("flops", "bandwidth"):
        f = next((g for g in results.get("figures", []) if g["group"] == "share of machine"
                  and g["key"].startswith(f"peak/{HELD_MODEL}/L1/{what}/{w2}")), None)
        name = "FLOP/s" if what == "flops" else "memory bandwidth"
        row(f"share of the machine's measured {name}", f, None,
            lambda x: f"{x['median']:.2g}%")
    lines = [_md_table(["figure", "agentloop", "pymdp 0.0.7.1", "vs pymdp 0.0.7.1",
                        "pymdp 1.x (JAX)"], rows)]
    cfg = results.get("config", {})
    git = results.get("git", {}) or {}
    lines.append("")
    lines.append(f"Generated by `{results.get('command')}` on {results.get('started')} "
                 f"(host {results.get('host')}, {results.get('machine', {}).get('cpu_count')} "
                 f"cores, commit {str(git.get('commit'))[:10]}); medians [min-max] over "
                 f"{cfg.get('repeats')} alternating repeats, all measured in the same run.")
    nm = results.get("not_measured", [])
    if nm:
        lines.append("Not measured: " + "; ".join(f"{x['what']}: {x['reason']}" for x in nm)
                     + ".")
    return "\n".join(lines)


def results_md_section(results: dict[str, Any], json_path: str | None = None) -> str:
    """The generated section of ``perf/RESULTS.md`` (without the markers)."""
    out = [f"## Benchmark report: `{results.get('command')}`", "",
           "Generated by `python -m perf`; do not edit by hand (the text between the bench "
           "markers is replaced on every full run).", "", readme_table(results), "",
           "### Every figure", "",
           _md_table(["group", "figure", "implementation", "median [min-max]", "pymdp 0.0.7.1",
                      "vs pymdp"], _figure_rows(results))]
    if results.get("plots"):
        out += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({_rel(p)})"
                                          for p in results["plots"])]
    if json_path:
        out += ["", f"Raw results: `{_rel(json_path)}`."]
    return "\n".join(out)


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(PERF_DIR))
    except ValueError:
        return str(path)


def update_marked_section(text: str, content: str, start: str = MARK_START,
                          end: str = MARK_END) -> str:
    """``text`` with what lies between the ``start`` and ``end`` markers replaced by
    ``content`` (markers appended at the end when absent); the rest is left as it was."""
    block = f"{start}\n{content.strip()}\n{end}"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i >= 0 and j >= 0:
        return text[:i] + block + text[j + len(end):]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"


def write_results_md(path: Path, section: str) -> None:
    """Regenerate ``path``'s bench section (the file is created when missing)."""
    text = path.read_text() if path.exists() else ""
    new = update_marked_section(text, section)
    if new != text:
        path.write_text(new)


# ------------------------------------------------------------------------------------ plots
def write_plots(results: dict[str, Any], directory: Path, stem: str) -> list[str]:
    """Throughput against population (log-log), latency and held-rate PNGs; their paths.

    Returns [] when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    figs = results.get("figures", [])

    curves: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = {}
    for f in figs:
        if f["group"] == "throughput":
            _, model, L, n, impl = f["key"].split("/")
            curves.setdefault(f"{model} {L.replace('L', 'policy_len ')}", {}).setdefault(
                impl, []).append((int(n[2:]), f))
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
        for ax, (title, impls) in zip(axes[0], curves.items(), strict=True):
            pymdp_rate = None
            for impl, pts in sorted(impls.items()):
                pts.sort(key=lambda p: p[0])
                xs = [p[0] for p in pts]
                ys = [p[1]["median"] for p in pts]
                lo = [p[1]["median"] - p[1]["min"] for p in pts]
                hi = [p[1]["max"] - p[1]["median"] for p in pts]
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                            label=IMPL_NAMES.get(impl, impl))
                pymdp_rate = pymdp_rate or pts[0][1].get("pymdp")
            if pymdp_rate:
                ax.axhline(pymdp_rate, color="grey", linestyle="--",
                           label="pymdp 0.0.7.1 (1/latency)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("agents")
            ax.set_ylabel("agent-steps/s")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-throughput.png"))

    lat = [f for f in figs if f["group"] == "step latency"]
    if lat:
        groups = list(dict.fromkeys(f["key"].rsplit("/", 1)[0] for f in lat))
        impls = list(dict.fromkeys(f["impl"] for f in lat))
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 4.5))
        width = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for j, g in enumerate(groups):
                f = _find(results, f"{g}/{impl}")
                if f:
                    xs.append(j + i * width)
                    ys.append(f["median"])
            ax.bar(xs, ys, width, label=IMPL_NAMES.get(impl, impl))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
        ax.set_xticklabels([g.split("/", 1)[1].replace("/L", "\nL=") for g in groups],
                           fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("us per step, one agent (median)")
        ax.set_title("Step latency")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-latency.png"))

    held = [f for f in figs if f["group"] == "held rate"]
    if held:
        rates = list(dict.fromkeys(f["key"].split("/")[3] for f in held))
        impls = list(dict.fromkeys(f["impl"] for f in held))
        fig, ax = plt.subplots(figsize=(6, 4.5))
        width = 0.8 / (len(impls) + 1)
        for i, impl in enumerate(impls):
            ys = [(_find(results, f"{held[0]['key'].rsplit('/', 2)[0]}/{r}/{impl}")
                   or {"median": 0})["median"] for r in rates]
            ax.bar([j + i * width for j in range(len(rates))], ys, width,
                   label=IMPL_NAMES.get(impl, impl))
        pym = [(_find(results, f"{held[0]['key'].rsplit('/', 2)[0]}/{r}/{engine_impl(2)}")
                or {}).get("pymdp") or 0 for r in rates]
        ax.bar([j + len(impls) * width for j in range(len(rates))], pym, width,
               label="pymdp 0.0.7.1 (budget / latency)")
        ax.set_xticks([j + width * len(impls) / 2 for j in range(len(rates))])
        ax.set_xticklabels(rates)
        ax.set_yscale("log")
        ax.set_ylabel("largest population held")
        ax.set_title(f"Largest population at full quality ({HELD_MODEL})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-held.png"))
    return paths


def _save(fig: Any, plt: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# ------------------------------------------------------------------------------------ CLI
class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got "
                                         f"{text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0, got "
                                         f"{text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


DESCRIPTION = ("The benchmark report: agentloop against pymdp 0.0.7.1 and pymdp 1.x, measured side "
               "by side in one run.")
EPILOG = ("exit codes: 0 done (no regression); 1 --compare found a figure more than 10% worse, "
          "or the run failed; 2 bad command line or unreadable --compare file")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="grid-10 at policy_len 1, up to 10,000 agents, 2 repeats, shorter "
                        "searches (under 2 minutes)")
    p.add_argument("--compare", metavar="OLD.json", default=None,
                   help="after the run, flag every agentloop figure more than 10%% worse than "
                        "in OLD.json (in its ratio to pymdp 0.0.7.1 measured in the same run); "
                        "exit 1 if any")
    p.add_argument("--against", metavar="NEW.json", default=None,
                   help="with --compare: compare NEW.json to OLD.json without running")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the results (default perf/results/<date>-<host>.json, "
                        "-quick added for --quick)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="alternating repeats of each measurement (default 3; --quick 2)")
    p.add_argument("--models", default=None,
                   help="comma-separated models for the latency figures (perf.models; default "
                        "grid-5,grid-10,grid-20,multi-3x3)")
    p.add_argument("--policy-lens", type=_int_list, default=None,
                   help="comma-separated policy lengths (default 1,3)")
    p.add_argument("--sizes", type=_int_list, default=None,
                   help="comma-separated populations of the throughput curve "
                        "(default 1,100,10000,100000,1000000)")
    p.add_argument("--workers", type=_int_list, default=None,
                   help="comma-separated engine worker counts (default 0,1,2)")
    p.add_argument("--stages", default=None,
                   help=f"comma-separated stages to run (default all: {', '.join(STAGES)}); "
                        "the machine probes always run")
    p.add_argument("--no-pymdp", action="store_true", help="skip pymdp 0.0.7.1 (no ratios)")
    p.add_argument("--no-pymdp1", action="store_true", help="skip pymdp 1.x (JAX)")
    p.add_argument("--no-install", action="store_true",
                   help="do not create perf/.venv-pymdp1 when it is missing")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--update-md", action=argparse.BooleanOptionalAction, default=None,
                   help="regenerate the bench section of perf/RESULTS.md (default: on for a "
                        "full run, off for --quick)")
    p.add_argument("--results-md", metavar="PATH", default=None,
                   help="the Markdown file whose bench section is regenerated "
                        "(default perf/RESULTS.md)")


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to ``subparsers``; dispatch it to :func:`main_bench`."""
    bench = subparsers.add_parser(
        "bench", help="the benchmark report: agentloop against pymdp 0.0.7.1 and 1.x",
        description=DESCRIPTION + " Measures step latency, throughput against "
        "population, the largest population held at 10/30/60 Hz, memory per agent, start-up, "
        "quantization error and the share of the machine's FLOP and bandwidth limits, each "
        "as a ratio to pymdp 0.0.7.1 measured in the same run; writes JSON, PNG plots and "
        "the bench section of perf/RESULTS.md.", epilog=EPILOG)
    _add_arguments(bench)


def build_parser(prog: str = "python -m perf") -> argparse.ArgumentParser:
    """The stand-alone parser of ``python -m perf``."""
    p = _OneLineParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    _add_arguments(p)
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` the arguments ask for (``ValueError`` with a one-line reason)."""
    from perf.models import MODELS

    cfg = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.repeats is not None:
        changes["repeats"] = args.repeats
    if args.models:
        models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            raise ValueError(f"--models: unknown model {', '.join(unknown) or '(none)'}; "
                             f"known: {', '.join(MODELS)}")
        changes["latency_models"] = models
    if args.policy_lens:
        if any(v < 1 for v in args.policy_lens):
            raise ValueError("--policy-lens: each must be at least 1")
        changes["policy_lens"] = args.policy_lens
    if args.sizes:
        if any(v < 1 for v in args.sizes):
            raise ValueError("--sizes: each must be at least 1")
        changes["sizes"] = tuple(sorted(set(args.sizes)))
    if args.workers:
        changes["workers"] = args.workers
    if args.stages:
        stages = tuple(x.strip() for x in args.stages.split(",") if x.strip())
        unknown = [x for x in stages if x not in STAGES]
        if unknown or not stages:
            raise ValueError(f"--stages: unknown stage {', '.join(unknown) or '(none)'}; "
                             f"known: {', '.join(STAGES)}")
        changes["stages"] = stages
    if args.no_pymdp:
        changes["pymdp"] = False
    if args.no_pymdp1:
        changes["pymdp1"] = False
    if args.no_install:
        changes["install_pymdp1"] = False
    return dataclasses.replace(cfg, **changes)


def default_json_path(quick: bool) -> Path:
    """``perf/results/<date>-<host>[-quick].json``."""
    host = socket.gethostname().split(".")[0] or "host"
    return RESULTS_DIR / f"{datetime.date.today().isoformat()}-{host}" \
                         f"{'-quick' if quick else ''}.json"


def _load(path: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {path}: {' '.join(str(exc).split())}") from None
    problems = validate_results(data)
    if problems:
        raise ValueError(f"{what} {path} is not a bench report: {problems[0]}")
    return data


def _command(prog: str, argv: Sequence[str] | None) -> str:
    if argv is not None:
        return " ".join([prog, *argv])
    if prog == "agentloop bench":
        return " ".join(["agentloop", *sys.argv[1:]])
    return " ".join([prog, *sys.argv[1:]])


def main_bench(args: argparse.Namespace, prog: str = "agentloop bench",
               argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or only ``--compare``) for parsed ``args``; the exit code.

    ``prog`` names the command in messages; ``argv`` (default ``sys.argv``) is recorded as the
    command that produced the results."""
    def usage(message: str) -> int:
        print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE

    if args.against and not args.compare:
        return usage("--against needs --compare OLD.json")
    try:
        cfg = config_from_args(args)
        old = _load(args.compare, "--compare") if args.compare else None
        if args.against:
            assert old is not None
            new = _load(args.against, "--against")
            print(format_comparison(compare(old, new), args.compare))
            return EXIT_REGRESSION if compare(old, new)["regressions"] else EXIT_OK
    except ValueError as exc:
        return usage(str(exc))
    json_path = Path(args.json) if args.json else default_json_path(args.quick)
    for path in (json_path, Path(args.results_md) if args.results_md else None):
        if path is not None and not path.parent.is_dir():
            return usage(f"{path}: the directory {path.parent} does not exist")
    command = _command(prog, argv)
    try:
        results = run(cfg, command)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if not args.no_plots:
        stem = json_path.stem
        results["plots"] = write_plots(results, PLOTS_DIR if not args.json
                                       else json_path.parent / "plots", stem)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    print(format_report(results))
    print(f"\nwrote {json_path}", file=sys.stderr)
    update_md = (not args.quick) if args.update_md is None else args.update_md
    if update_md:
        md = Path(args.results_md) if args.results_md else RESULTS_MD
        write_results_md(md, results_md_section(results, str(json_path)))
        print(f"regenerated the bench section of {md}", file=sys.stderr)
        if not args.results_md:
            write_results_md(README_MD, readme_table(results))
            print(f"regenerated the results table of {README_MD}", file=sys.stderr)
    if old is not None:
        cmp = compare(old, results)
        print("\n" + format_comparison(cmp, args.compare))
        return EXIT_REGRESSION if cmp["regressions"] else EXIT_OK
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perf``."""
    args = build_parser().parse_args(argv)
    return main_bench(args, prog="python -m perf", argv=argv)


if __name__ == "__main__":
    sys.exit(main())
