"""Device-resident populations (engine.device): the array backend inside the engine.

Run on NumPy ("xp-numpy") everywhere; the same tests run on CuPy where a GPU is usable and skip
cleanly otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import Agents, ConfigError, InferenceConfig, Population
from engine.kernels.backends import cupy_available
from engine.runtime import device_populations as device_module
from engine.runtime.degrade import ROTATING_FRACTION, STALE_ACTIONS
from engine.runtime.engine import Engine
from engine.runtime.stale import StaleCounts
from tests.logs import expect_log
from world.models import grid_model, random_model

HAVE_CUPY, CUPY_REASON = cupy_available()
BACKENDS = ["xp-numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not HAVE_CUPY, reason=f"no CuPy GPU: {CUPY_REASON}"))]


def _obs(model, n: int, seed: int) -> np.ndarray:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)


def _mixed(backend: str) -> list[Population]:
    two_factor = random_model(np.random.default_rng(3), [3, 4], [3, 2], [2, 2])
    return [Population("walkers", grid_model(5), 300, InferenceConfig(policy_len=2)),
            Population("guessers", two_factor, 500,
                       InferenceConfig(action_selection="stochastic", alpha=3.0),
                       backend=backend)]


def _references(populations: list[Population], seed: int) -> list[Agents]:
    refs, offset = [], 0
    for p in populations:
        refs.append(Agents(p.model, p.n_agents, p.config, seed=seed, agent_id_offset=offset))
        offset += p.n_agents
    return refs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workers", [0, 2])
def test_mixed_engine_matches_agents(backend: str, workers: int) -> None:
    """A CPU population and a device population in one engine each equal ``Agents`` on
    their model: actions identical, q(pi) and beliefs to 1e-4 (the issue's parity bound)."""
    populations = _mixed(backend)
    refs = _references(populations, seed=4)
    with Engine(populations=populations, workers=workers, seed=4, beliefs="float",
                refresh_every=3) as engine:
        assert engine.backends == ["numba", backend]
        for tick in range(5):
            obs = [_obs(p.model, p.n_agents, 10 * tick + i) for i, p in enumerate(populations)]
            actions = engine.step(obs)
            for p, ref, ours, o in zip(populations, refs, actions, obs, strict=True):
                np.testing.assert_array_equal(ours, ref.step(o))
                state = engine.population(p.name)
                np.testing.assert_allclose(state.q_pi, ref.q_pi, atol=1e-4)
                for q_ours, q_ref in zip(state.qs, ref.qs, strict=True):
                    np.testing.assert_allclose(q_ours, q_ref, atol=1e-4)
            assert not engine.stale.any()


def test_device_state_reaches_shared_memory_every_refresh() -> None:
    """Each tick copies the next third (``refresh_every=3``) of a device population's rows into
    shared memory, beliefs encoded as the CPU codec encodes them, so every row is at most three
    ticks old; reading the state through the engine copies every row."""
    model = grid_model(4)
    n = 64                                      # bands of 22, 22 and 20 rows
    with Engine(model, n, workers=0, backend="xp-numpy", refresh_every=3) as engine:
        device = engine.devices[0]
        codes, q_pi = engine.state.qs, engine.state.q_pi
        host = np.empty((n, device.stepper.layout.state_size), dtype=np.float32)
        expected = np.empty_like(codes)
        for tick, (lo, hi) in enumerate([(0, 22), (22, 44), (44, 64), (0, 22)]):
            engine.step(_obs(model, n, tick))
            device.stepper.copy_to_host(qs_flat=host)
            engine.state.codec_instance.encode(host, expected)
            np.testing.assert_array_equal(codes[lo:hi], expected[lo:hi])
            np.testing.assert_array_equal(q_pi[lo:hi], device.stepper.q_pi[lo:hi])
            if tick == 0:
                assert not codes[hi:].any() and not q_pi[hi:].any()   # not copied yet
        engine.step(_obs(model, n, 4))
        before = codes.copy()
        _ = engine.population(0).qs             # reading copies every row
        device.stepper.copy_to_host(qs_flat=host)
        engine.state.codec_instance.encode(host, expected)
        np.testing.assert_array_equal(codes, expected)
        assert not np.array_equal(before, codes)


def test_encode_on_the_device_equals_the_cpu_codec() -> None:
    """``BeliefCodec.encode_array`` (what a device population encodes with) gives the CPU
    codec's codes, edge rows included (zeros, NaN, inf, all below the floor)."""
    from engine.kernels.beliefs import BeliefCodec  # noqa: PLC0415

    rng = np.random.default_rng(0)
    beliefs = np.concatenate([rng.dirichlet(np.full(100, 0.05), size=5000),
                              rng.dirichlet(np.ones(3), size=5000)], axis=1).astype(np.float32)
    beliefs[0, :5] = 0.0
    beliefs[1, :100] = 0.0
    beliefs[2, 3] = np.nan
    beliefs[3, 100:] = np.inf
    beliefs[4, :] = 1e-30
    for name in ("uint16", "uint8", "float32"):
        codec = BeliefCodec(name, np.array([0, 100, 103]))
        want = codec.empty(len(beliefs))
        codec.encode(beliefs, want)
        got = codec.encode_array(np, beliefs)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deadline_and_levels_on_the_device(backend: str, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    model = grid_model(4)
    n = 500
    monkeypatch.setattr(device_module, "DEVICE_CHUNK", 100)
    with Engine(model, n, workers=0, backend=backend, degrade=False) as engine:
        first = np.array(engine.step(_obs(model, n, 0)))
        engine.step(_obs(model, n, 1), budget_s=0.0)        # the first chunk always runs
        assert engine.last_tick.stale_agents == n - 100
        assert engine.last_tick.stale_reasons == StaleCounts(deadline=n - 100)
        assert engine.stale[:100].sum() == 0
        np.testing.assert_array_equal(engine.state.actions[100:], first[100:])
        engine.step(_obs(model, n, 2), level=STALE_ACTIONS)
        assert engine.stale.all()
        assert engine.last_tick.stale_reasons == StaleCounts(degraded=n)
        engine.step(_obs(model, n, 3), level=ROTATING_FRACTION)
        assert engine.last_tick.stale_agents in (200, 300)   # alternate chunks of 100
        # the device's own chunks (100), not the engine's (1024), are what rotates
        assert engine.last_tick.stale_reasons == StaleCounts(degraded=engine.last_tick.stale_agents)


def test_snapshot_reload_and_reset_on_the_device() -> None:
    """agent_state / load_agent_state continue a device population exactly, reset starts
    chosen agents' episodes again (as on the Agents facade over the same array code: Numba
    may break exact ties of symmetric grid moves the other way), and a forced stale set
    (replay) is honoured."""
    model = grid_model(4)
    n = 120
    obs = [_obs(model, n, k) for k in range(6)]
    with Engine(model, n, workers=0, backend="xp-numpy", beliefs="float") as engine:
        for k in range(3):
            engine.step(obs[k])
        snapshot = engine.agent_state()
        later = [np.array(engine.step(obs[k])) for k in (3, 4)]
        engine.load_agent_state(snapshot, tick=3)
        again = [np.array(engine.step(obs[k])) for k in (3, 4)]
        for a, b in zip(later, again, strict=True):
            np.testing.assert_array_equal(a, b)
        ref = Agents(model, n, InferenceConfig(), seed=0, backend="xp-numpy")
        for k in range(5):
            ref.step(obs[k])
        engine.reset(np.arange(0, n, 3))
        ref.reset(np.arange(0, n, 3))
        np.testing.assert_array_equal(engine.step(obs[5]), ref.step(obs[5]))
        kept = np.array(engine.state.actions)
        engine.step(obs[0], level=0, stale=np.array([1, 7]))
        np.testing.assert_array_equal(engine.state.actions[[1, 7]], kept[[1, 7]])
        assert engine.stale.sum() == 2


def test_backend_errors_name_the_population() -> None:
    model = grid_model(4)
    with pytest.raises(ConfigError, match="reference backend"):
        Engine(model, 10, workers=0, backend="reference")
    with pytest.raises(ConfigError, match="backend must be one of"):
        Engine(populations=[Population("a", model, 5, backend="tpu")], workers=0)
    if not HAVE_CUPY:
        with pytest.raises(ConfigError, match="population 'a': backend 'cupy' needs CuPy"):
            Engine(populations=[Population("a", model, 5, backend="cupy")], workers=0)
    with Engine(model, 10, workers=0, backend="auto") as engine:
        assert engine.backends == ["cupy" if HAVE_CUPY else "numba"]
    with pytest.raises(ConfigError, match="refresh_every"):
        Engine(model, 10, workers=0, backend="xp-numpy", refresh_every=0)


def test_degraded_levels_match_the_cpu_rungs() -> None:
    """Fewer iterations and a shorter horizon reach the array code: a device population at
    each level equals a CPU population forced to the same level (multi-factor, policy_len 2,
    so both rungs change something)."""
    model = random_model(np.random.default_rng(3), [3, 4], [3, 2], [2, 2])
    config = InferenceConfig(policy_len=2, num_iter=4)
    n = 60
    pops = [Population("cpu", model, n, config), Population("dev", model, n, config,
                                                            backend="xp-numpy")]
    with Engine(populations=pops, workers=0, beliefs="float") as engine:
        for level in (1, 2, 0, 2):
            obs = _obs(model, n, level)
            cpu, dev = engine.step([obs, obs], level=level)
            cpu_state, dev_state = engine.population("cpu"), engine.population("dev")
            np.testing.assert_allclose(dev_state.G[:, :], cpu_state.G, atol=1e-4)
            np.testing.assert_allclose(dev_state.q_pi, cpu_state.q_pi, atol=1e-4)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failed_device_population_continues_on_the_cpu(workers: int) -> None:
    """The device fails in tick 5: from that tick the master steps the population on the CPU
    from its state in shared memory, exactly as a CPU engine loaded with that state; the CPU
    population never notices."""
    populations = _mixed("xp-numpy")
    ticks = [[_obs(p.model, p.n_agents, 10 * t + i) for i, p in enumerate(populations)]
             for t in range(9)]
    with Engine(populations=populations, workers=workers, seed=4, refresh_every=3) as engine:
        for t in range(5):
            engine.step(ticks[t])
        resumed = engine.agent_state("guessers")       # copies the device state to shm
        engine.devices[1].fail_at_tick = 5
        with expect_log("agentloop.device", "'guessers': the device failed at tick 5"):
            later = [np.array(engine.step(ticks[5])[1])]
        assert [(f.tick, f.population) for f in engine.failovers] == [(5, "guessers")]
        assert "DeviceFault" in engine.failovers[0].error and engine.backends[1] == "numba"
        later += [np.array(engine.step(obs)[1]) for obs in ticks[6:]]
        assert not engine.stale.any()
    alone = Population("guessers", populations[1].model, populations[1].n_agents,
                       populations[1].config)
    with Engine(populations=[alone], workers=0, seed=4, id_offset=300) as reference:
        reference.load_agent_state(resumed, 5)
        for obs, actions in zip(ticks[5:], later, strict=True):
            np.testing.assert_array_equal(reference.step(obs[1]), actions)


def test_the_deadline_is_checked_after_the_device_finished_the_chunk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy launches return before the work is done, so between chunks the population waits
    for the device (for all but the last chunk launched) before it reads the clock; else a
    deadline would never cut a GPU tick."""
    model, n, events = grid_model(4), 500, []
    monkeypatch.setattr(device_module, "DEVICE_CHUNK", 100)
    monkeypatch.setattr(device_module.DevicePopulation, "_wait_for_device",
                        lambda self, launched: events.append(f"wait {launched}"))
    real_monotonic = device_module.time.monotonic
    monkeypatch.setattr(device_module.time, "monotonic",
                        lambda: events.append("clock") or real_monotonic())
    with Engine(model, n, workers=0, backend="xp-numpy", degrade=False) as engine:
        events.clear()
        engine.devices[0].step(engine.tick, real_monotonic() + 60.0, 0)
    assert events == [e for k in range(1, 5) for e in (f"wait {k}", "clock")]  # 5 chunks
