"""The CuPy-only code paths, run on a NumPy stand-in for CuPy (``tests/fake_cupy.py``).

CI has no GPU, so the branches agentloop takes only when ``xp`` is CuPy (copies back with
``.get``, CUDA events between chunks, ``RawModule`` launches of the fused kernel over a whole
grid, pinned buffers, the device-side belief encoder, CUDA errors and failover, the GPU
benchmark's device queries) would otherwise first run on a lent GPU machine. Here they run with
CuPy's call signatures against NumPy, and must give what the NumPy path gives.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import Agents, InferenceConfig, Population
from engine.kernels import fused
from engine.runtime import device_populations as device_module
from engine.runtime.engine import Engine
from tests import fake_cupy
from tests.engine.kernels.test_array_step import MODELS, TOL, run_parity
from tests.engine.runtime.test_device_populations import _mixed, _obs, _references
from tests.logs import expect_log
from world.models import grid_model

pytestmark = pytest.mark.skipif(fused.host_compiler() is None,
                                reason="the fused kernel's host build needs a C++ compiler")


@pytest.fixture
def cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in installed as ``cupy`` and ``cupyx`` for one test."""
    fake, fakex = fake_cupy.make_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", fakex)
    device_module.device_errors.cache_clear()
    yield fake
    device_module.device_errors.cache_clear()


@pytest.mark.parametrize("kernel", ["array", "fused"])
@pytest.mark.parametrize(("model_name", "policy_len", "selection"), [
    ("grid5", 2, "deterministic"), ("two_factor", 2, "stochastic")])
def test_stepper_on_cupy_matches_numba(cupy: Any, kernel: str, model_name: str,
                                       policy_len: int, selection: str) -> None:
    run_parity(MODELS[model_name](), InferenceConfig(policy_len=policy_len,
                                                     action_selection=selection),
               xp=cupy, kernel=kernel)


def test_the_fused_kernel_is_launched_over_a_grid(cupy: Any) -> None:
    """A launch of many 128-thread blocks, each thread striding over the agents, gives the
    agents what one thread stepping them all gives."""
    from engine.kernels.array_step import XpStepper  # noqa: PLC0415

    model, cfg = MODELS["two_factor"](), InferenceConfig(policy_len=2)
    on_gpu = XpStepper(model, 1000, cfg, seed=2, xp=cupy, kernel="fused")
    on_host = XpStepper(model, 1000, cfg, seed=2, kernel="fused")
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs = np.stack([rng.integers(0, o, 1000) for o in model.num_obs], axis=1)
        np.testing.assert_array_equal(on_gpu.step(obs).get(), on_host.step(obs))
    np.testing.assert_array_equal(on_gpu.qs_flat.get(), on_host.qs_flat)
    assert on_gpu._fused._kernel.launches[-1] == (8, fused.BLOCK)   # ceil(1000 / 128) blocks


def test_agents_facade_on_cupy(cupy: Any) -> None:
    model = grid_model(5)
    cpu = Agents(model, 16, seed=1)
    gpu = Agents(model, 16, seed=1, backend="cupy", xp_kernel="fused")
    assert gpu.backend == "cupy"
    obs = np.zeros((16, 2), dtype=np.int64)
    np.testing.assert_array_equal(cpu.step(obs), gpu.step(obs))
    assert np.abs(cpu.q_pi - gpu.q_pi).max() < TOL


@pytest.mark.parametrize("kernel", ["array", "fused"])
def test_mixed_engine_on_cupy(cupy: Any, kernel: str) -> None:
    """A CPU and a CuPy population in one engine (workers 0): actions equal ``Agents``;
    the banded refresh encodes beliefs on the "device" and gets the CPU codec's codes."""
    populations = _mixed("cupy")
    refs = _references(populations, seed=4)
    with Engine(populations=populations, workers=0, seed=4, refresh_every=2,
                xp_kernel=kernel) as engine:
        assert engine.backends == ["numba", "cupy"]
        device = engine.devices[1]
        for tick in range(4):
            obs = [_obs(p.model, p.n_agents, 10 * tick + i) for i, p in enumerate(populations)]
            for ref, ours, o in zip(refs, engine.step(obs), obs, strict=True):
                np.testing.assert_array_equal(ours, ref.step(o))
        assert all(e.recorded for e in device._chunk_done[:1])
        state = engine.population("guessers")             # a read copies every row
        np.testing.assert_allclose(state.q_pi, refs[1].q_pi, atol=TOL)
        host = device.stepper.qs_flat.get()
        expected = np.empty_like(device.state.qs)
        device.state.codec_instance.encode(host, expected)
        np.testing.assert_array_equal(device.state.qs, expected)


def test_a_cuda_error_fails_the_population_over(cupy: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA runtime error raised by a launch is one of ``device_errors()``: the population
    continues on the CPU."""
    populations = [Population("p", grid_model(5), 50, backend="cupy")]
    with Engine(populations=populations, workers=0, seed=1, xp_kernel="fused") as engine:
        engine.step(np.zeros((50, 2), dtype=np.int64))
        kernel = engine.devices[0].stepper._fused._kernel

        def broken(*args: Any) -> None:
            raise cupy.cuda.runtime.CUDARuntimeError("cudaErrorLaunchFailure: unspecified")

        monkeypatch.setattr(kernel, "library", type("L", (), {"fused_step_host":
                                                              staticmethod(broken)})())
        with expect_log("agentloop.device", "the device failed at tick 1"):
            actions = engine.step(np.zeros((50, 2), dtype=np.int64))
        assert engine.backends == ["numba"] and actions.shape == (50, 1)
        assert "CUDARuntimeError" in engine.failovers[0].error


def test_gpu_benchmark_on_cupy(cupy: Any, tmp_path: Path) -> None:
    from perf import gpu  # noqa: PLC0415

    path = tmp_path / "gpu.json"
    assert gpu.main(["--agents", "300", "--engine-agents", "200", "--quick", "--min-blocks",
                     "4", "--json", str(path)]) == 0
    import json  # noqa: PLC0415

    result = json.loads(path.read_text())
    assert result["device"]["device"] == "Fake GPU" and result["device"]["peak_gbs"] > 0
    assert [r["kernel"] for r in result["throughput"]] == ["array", "fused"]
