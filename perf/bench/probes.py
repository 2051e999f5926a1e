"""Every measurement a benchmark run makes, one method each (tests replace them with fakes)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from perf.bench.config import (
    AGENTLOOP_MT,
    AGENTLOOP_MT1,
    HELD_MODEL,
    PYMDP,
    PYMDP1,
    PYMDP1_VMAP,
    REFERENCE,
    STEP_PARAMS,
    BenchConfig,
)
from perf.bench.peers import JaxPeer
from perf.bench.progress import Progress


@dataclasses.dataclass
class PopulationHandle:
    """A population under throughput measurement."""

    impl: str
    n: int
    step: Callable[[], float]
    close: Callable[[], None]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: agentloop in process: the share of joint states its beliefs keep above e^-16
    live_fraction: Callable[[], float] | None = None


class Probes:
    """Every measurement :func:`run` makes, one method each (tests replace them with fakes)."""

    def __init__(self, cfg: BenchConfig, progress: Progress) -> None:
        self.cfg = cfg
        self.progress = progress
        self._latency: dict[tuple[str, int, str], Any] = {}
        self.jax: JaxPeer | None = None
        self.jax_reason = ""
        #: what each of the child's slots (named by kernel) holds now
        self._jax_keys: dict[str, tuple[str, int, int]] = {}
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
        from perf.kernels.machine import measure_bandwidth, measure_matmul

        return {"matmul": measure_matmul(self.cfg.matmul_n, threads, self.cfg.matmul_repeats),
                "bandwidth": measure_bandwidth(self.cfg.copy_mb, threads, self.cfg.copy_repeats)}

    # ---- latency
    def latency(self, model: str, policy_len: int, impl: str) -> list[float]:
        """One repeat of one agent's step latency: the step times, seconds."""
        key = (model, policy_len, impl)
        cfg = self.cfg
        if impl == PYMDP1:
            self._jax_setup(model, policy_len, 1)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < cfg.latency_steps:
                times += self._jax_time("agent", 10)
                if len(times) >= cfg.latency_min_steps and \
                        time.perf_counter() - start > cfg.latency_budget_s:
                    break
            return times
        import numpy as np

        from engine import Agents, InferenceConfig
        from perf.kernels.timing import pymdp_step_fn, timed_steps
        from perf.models import model_by_name
        from world.process import ModelProcess

        if key not in self._latency:
            m = model_by_name(model)
            if impl == PYMDP:
                step = pymdp_step_fn(m, policy_len)
            else:
                backend = "reference" if impl == REFERENCE else "numba"
                step = Agents(m, 1, InferenceConfig(policy_len=policy_len), seed=cfg.seed,
                              threads=1, backend=backend).step  # type: ignore[arg-type]
            world = ModelProcess(m, 1, np.random.default_rng(cfg.seed))
            self._latency[key] = (step, world)
        step, world = self._latency[key]
        # pymdp 0.0.7.1 takes seconds a step on the larger zoo models: one timed step will do
        times, _first = timed_steps(step, world, cfg.latency_steps, cfg.latency_budget_s,
                                    1 if impl == PYMDP else cfg.latency_min_steps)
        return times

    def latency_done(self) -> None:
        """Drop the latency measurements' agents."""
        self._latency.clear()

    def _jax_setup(self, model: str, policy_len: int, n: int, kernel: str = "agent"
                   ) -> dict[str, Any]:
        if self.jax is None:
            raise RuntimeError(self.jax_reason or "pymdp 1.x is not running")
        key = (model, policy_len, n)
        name = f"{model}/L{policy_len}/N={n}" + ("" if kernel == "agent" else f"/{kernel}")
        if self._jax_keys.get(kernel) != key:
            self._jax_keys.pop(kernel, None)
            path = self.jax.model_file(model, policy_len if kernel == "vmap" else None)
            info = self.jax.ask({"op": "setup", "model": path, "policy_len": policy_len,
                                 "n": n, "seed": self.cfg.seed, "kernel": kernel,
                                 "slot": kernel, "params": STEP_PARAMS})
            info["rss_bytes"] = self.jax.rss()
            self.jax_setup_info[name] = info
            self._jax_keys[kernel] = key
        return self.jax_setup_info[name]

    def _jax_time(self, kernel: str, steps: int) -> list[float]:
        """Time ``steps`` steps of the population in the child's ``kernel`` slot."""
        assert self.jax is not None
        answer = self.jax.ask({"op": "time", "steps": steps, "slot": kernel})
        if answer.get("kernel", kernel) != kernel:
            raise RuntimeError(f"the pymdp 1.x child timed {answer.get('kernel')!r}, "
                               f"not {kernel!r}")
        return [float(t) for t in answer["times"]]

    def _jax_drop(self, kernel: str) -> None:
        """Free the child's ``kernel`` slot (a dead child has nothing to free)."""
        self._jax_keys.pop(kernel, None)
        if self.jax is not None:
            try:
                self.jax.ask({"op": "drop", "slot": kernel}, 60.0)
            except RuntimeError:
                pass

    # ---- throughput
    def open_population(self, model: str, policy_len: int, n: int, impl: str) -> PopulationHandle:
        """Create ``n`` agents of ``impl`` ready to step: the engine, agentloop's ``Agents``
        in process (reference backend, or Numba on every thread in either pymdp mode), pymdp
        1.x batched or vmapped. The zoo's populations (agentloop on every thread, pymdp 1.x)
        step with :data:`STEP_PARAMS`."""
        if impl in (PYMDP1, PYMDP1_VMAP):
            kernel = "vmap" if impl == PYMDP1_VMAP else "agent"
            info = self._jax_setup(model, policy_len, n, kernel)
            return PopulationHandle(impl, n, lambda: self._jax_time(kernel, 1)[0],
                                    lambda: self._jax_drop(kernel), dict(info))
        import numpy as np

        from engine import Agents, Engine, InferenceConfig
        from perf.kernels.model_cost import live_joint_fraction
        from perf.models import model_by_name
        from world.process import ModelProcess

        m = model_by_name(model)
        config = InferenceConfig(policy_len=policy_len)
        if impl in (AGENTLOOP_MT, AGENTLOOP_MT1):
            config = config.replace(semantics="pymdp1" if impl == AGENTLOOP_MT1 else "pymdp0",
                                    **STEP_PARAMS)
        world = ModelProcess(m, n, np.random.default_rng(self.cfg.seed))
        if impl in (REFERENCE, AGENTLOOP_MT, AGENTLOOP_MT1):
            agents = Agents(m, n, config, seed=self.cfg.seed,
                            backend="reference" if impl == REFERENCE else "numba")
            stepper: Callable[[Any], Any] = agents.step
            closer: Callable[[], None] = lambda: None  # noqa: E731
            live: Callable[[], float] | None = lambda: live_joint_fraction(  # noqa: E731
                agents.qs, np.random.default_rng(self.cfg.seed))
            extra = {"config": agents.config.to_dict()}
        else:
            workers = int(impl.removeprefix("engine-w"))
            eng = Engine(m, n, workers=workers, config=config, seed=self.cfg.seed, degrade=False)
            eng.start()
            stepper, closer = eng.step, eng.close
            live = None
            extra = {"config": config.to_dict()}

        def step() -> float:
            obs = world.observe()
            t0 = time.perf_counter()
            actions = stepper(obs)
            elapsed = time.perf_counter() - t0
            world.advance(actions)
            return elapsed
        return PopulationHandle(impl, n, step, closer, extra, live_fraction=live)

    def step_cost(self, model: str, policy_len: int) -> dict[str, Any] | None:
        """FLOPs and bytes of one step (perf.kernels.step_cost, support from 2,000 agents)."""
        import numpy as np

        from engine import Agents, InferenceConfig
        from perf.kernels.cost import belief_support, step_cost
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

    def zoo_cost(self, model: str, policy_len: int, live_fraction: float = 1.0
                 ) -> dict[str, Any]:
        """FLOPs and bytes of one step from the model's sizes (perf.kernels.model_cost), the
        joint information gain over ``live_fraction`` of the joint states."""
        from perf.kernels.model_cost import model_step_cost
        from perf.models import model_by_name

        return model_step_cost(model_by_name(model), policy_len, live_fraction=live_fraction)

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
        from perf.kernels.memory import rss_per_agent

        return rss_per_agent(HELD_MODEL, policy_len, self.cfg.rss_agents, self.cfg.seed)

    def pymdp_footprint(self, policy_len: int) -> dict[str, Any]:
        """pymdp 0.0.7.1: RSS growth per ``Agent`` and seconds to create one (a child)."""
        from perf.kernels.memory import measure_in_child

        return measure_in_child(f"from perf.bench.peers import pymdp_child; pymdp_child("
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
