"""Engine: shared memory + worker processes give the same results as in-process Agents."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from engine import Agents, ConfigError, InferenceConfig, ObservationError
from engine.errors import AgentloopError
from engine.kernels.beliefs import BeliefCodec
from engine.runtime.engine import Engine
from engine.runtime.shm import entries_of
from world.models import grid_model, random_model


def _observations(model, n: int, ticks: int, seed: int) -> list[np.ndarray]:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    return [np.stack([rng.integers(0, o, size=n) for o in model.num_obs], axis=1)
            for _ in range(ticks)]


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("model_name", ["grid-5", "random-2-factors", "pymdp1-3-modalities"])
@pytest.mark.parametrize("beliefs", ["float", "uint16"])
def test_engine_matches_agents_for_any_worker_count(workers: int, model_name: str,
                                                    beliefs: str) -> None:
    """Bit-identical to in-process Agents (whose beliefs take the same codec round trip)."""
    if model_name == "grid-5":
        model, config = grid_model(5), InferenceConfig(policy_len=2)
    elif model_name == "random-2-factors":
        model = random_model(np.random.default_rng(1), [3, 4], [3, 2], [2, 2])
        config = InferenceConfig(action_selection="stochastic", alpha=3.0)
    else:
        model = random_model(np.random.default_rng(1), [3, 4, 2], [3, 2], [2, 2])
        config = InferenceConfig.pymdp1(policy_len=2)
    n = 700
    reference = Agents(model, n, config, seed=9)
    codec = None
    if beliefs != "float":
        codec = BeliefCodec(beliefs, reference.layout.state_offset)
        codes = codec.empty(n)
    with Engine(model, n, workers=workers, config=config, seed=9, chunk=128,
                beliefs=beliefs) as engine:
        for obs in _observations(model, n, 6, seed=2):
            expected = np.array(reference.step(obs))
            if codec is not None:                 # what the shared-memory hand-off does
                codec.encode(reference._qs, codes)
                codec.decode(codes, reference._qs)
            np.testing.assert_array_equal(engine.step(obs), expected)
            np.testing.assert_array_equal(engine.q_pi, reference.q_pi)
            for ours, theirs in zip(engine.qs, reference.qs, strict=True):
                np.testing.assert_array_equal(ours, theirs)
        run_id = engine.run_id
    assert entries_of([run_id]) == []


def test_quantized_beliefs_halve_the_shared_memory() -> None:
    model = grid_model(10)
    with Engine(model, 1000, workers=0, beliefs="uint16") as small, \
            Engine(model, 1000, workers=0, beliefs="float") as plain:
        assert small.state.qs.dtype == np.uint16 and small.state.qs.nbytes == 1000 * 100 * 2
        assert plain.state.qs.dtype == np.float32
    with pytest.raises(ConfigError, match="beliefs"):
        Engine(model, 10, beliefs="int4")


@pytest.mark.parametrize("workers", [0, 2])
def test_deadline_leaves_unreached_agents_stale_with_their_last_action(workers: int) -> None:
    model = grid_model(5)
    n = 2000
    with Engine(model, n, workers=workers, chunk=50) as engine:
        ticks = _observations(model, n, 2, seed=3)
        first = np.array(engine.step(ticks[0]))
        assert engine.last_tick.stale_agents == 0
        second = np.array(engine.step(ticks[1], budget_s=0.0))
        stale = engine.stale.astype(bool)
        assert engine.last_tick.stale_agents == stale.sum() > 0
        assert stale.sum() <= n - 50 * max(1, workers)      # each slice ran its first chunk
        np.testing.assert_array_equal(second[stale], first[stale])


def test_bad_observations_rejected_and_shared_state_kept() -> None:
    model = grid_model(4)
    with Engine(model, 100, workers=1) as engine:
        engine.step(_observations(model, 100, 1, seed=4)[0])
        before = [np.array(a) for a in (engine.state.qs, engine.state.actions)]
        bad = _observations(model, 100, 1, seed=5)[0]
        bad[17, 1] = 7
        with pytest.raises(ObservationError, match="agent 17, modality 1"):
            engine.step(bad)
        with pytest.raises(ObservationError, match="shape"):
            engine.step(bad[:50])
        for x, y in zip(before, (engine.state.qs, engine.state.actions), strict=True):
            np.testing.assert_array_equal(x, y)
        assert engine.tick == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_worker_is_respawned_with_beliefs_kept(workers: int) -> None:
    """SIGKILL a worker: detected within the tick and respawned, nothing lost. Alone, its
    slice is stale for that tick; with a second worker, that worker steps the slice for it
    (it helps with the chunks the dead one never took)."""
    model = grid_model(4)
    n = 200
    engine = Engine(model, n, workers=workers).start()
    run_id = engine.run_id
    ticks = _observations(model, n, 60, seed=6)
    engine.step(ticks[0])
    victim = workers - 1
    (lo, hi), = engine.slices[victim]
    beliefs = np.array(engine.state.qs[lo:hi])
    actions = np.array(engine.state.actions[lo:hi])
    with Engine(model, n, workers=0) as reference:       # what a tick of every agent gives
        reference.step(ticks[0])
        expected = np.array(reference.step(ticks[1]))
    os.kill(engine.worker_group.processes[victim].pid, signal.SIGKILL)
    engine.worker_group.processes[victim].join(10)
    engine.step(ticks[1])
    assert engine.respawns == 1
    if workers == 1:
        assert engine.stale[lo:hi].all() and not engine.stale[:lo].any()
        np.testing.assert_array_equal(engine.state.qs[lo:hi], beliefs)
        np.testing.assert_array_equal(engine.state.actions[lo:hi], actions)
    else:
        assert not engine.stale.any()
        np.testing.assert_array_equal(engine.state.actions, expected)
    for obs in ticks[2:]:                        # the new worker picks the slice up again
        engine.step(obs)
        if engine.last_tick.stale_agents == 0 and engine.control.busy(victim) > 0:
            break
        time.sleep(0.1)
    assert engine.last_tick.stale_agents == 0
    assert not np.array_equal(engine.state.qs[lo:hi], beliefs)
    engine.close()
    assert entries_of([run_id]) == []


def test_step_before_start_and_double_close() -> None:
    engine = Engine(grid_model(3), 10, workers=0)
    with pytest.raises(AgentloopError, match="start"):
        engine.step(np.zeros((10, 2), dtype=np.int64))
    engine.start()
    engine.close()
    engine.close()


def test_metrics_and_status_line() -> None:
    model = grid_model(4)
    with Engine(model, 300, workers=2) as engine:
        for obs in _observations(model, 300, 5, seed=8):
            engine.step(obs, budget_s=1.0)
        snap = engine.metrics.snapshot()
        assert snap.ticks == 5 and snap.missed == 0 and snap.level == 0
        assert len(snap.worker_busy_ms) == 2 and all(b > 0 for b in snap.worker_busy_ms)
        assert snap.rss_mb > 10 and 0 < snap.utilisation < 1
        line = engine.metrics.status_line()
        assert "p99" in line and " L0 " in line and len(line) <= 100


def test_warm_engine_tick_allocates_nothing_per_agent() -> None:
    """The slice code workers run: after warm-up a tick's allocations do not grow with agents.

    Numba wraps each array argument per kernel call (a fixed count per chunk, whatever its
    size); Python-side memory stays flat over many ticks.
    """
    import tracemalloc

    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    model = grid_model(5)
    per_tick = []
    for n in (256, 4096):
        with Engine(model, n, workers=0, chunk=n) as engine:          # one chunk a tick
            ticks = _observations(model, n, 3, seed=10)
            engine.step(ticks[0])
            engine.step(ticks[1])
            before = rtsys.get_allocation_stats()
            engine.step(ticks[2])
            after = rtsys.get_allocation_stats()
            per_tick.append(after.alloc - before.alloc)
            assert after.alloc - before.alloc == after.free - before.free
            tracemalloc.start()
            for _ in range(1200):
                engine.step(ticks[2])
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(200):
                engine.step(ticks[2])
            end, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert end - start < 2048, f"Python memory grew by {end - start} bytes"
    assert per_tick[0] == per_tick[1], per_tick


def test_warm_engine_tick_under_a_deadline_allocates_nothing_per_agent() -> None:
    """With a budget the slice is stepped in blocks sized by the measured pace, the deadline
    checked between them: after warm-up a tick's allocations still do not grow with agents."""
    import tracemalloc

    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    model = grid_model(5)
    per_tick = []
    for n in (256, 4096):
        with Engine(model, n, workers=0, chunk=n) as engine:
            ticks = _observations(model, n, 3, seed=12)
            engine.step(ticks[0], budget_s=10.0)
            engine.step(ticks[1], budget_s=10.0)
            before = rtsys.get_allocation_stats()
            engine.step(ticks[2], budget_s=10.0)
            after = rtsys.get_allocation_stats()
            assert engine.last_tick.stale_agents == 0
            per_tick.append(after.alloc - before.alloc)
            assert after.alloc - before.alloc == after.free - before.free
            tracemalloc.start()
            for _ in range(1200):
                engine.step(ticks[2], budget_s=10.0)
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(200):
                engine.step(ticks[2], budget_s=10.0)
            end, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert end - start < 2048, f"Python memory grew by {end - start} bytes"
    assert per_tick[0] == per_tick[1], per_tick


def test_no_descriptor_or_process_outlives_the_engine() -> None:
    import psutil

    model = grid_model(3)
    me = psutil.Process()
    with Engine(model, 50, workers=1):     # multiprocessing starts its resource tracker once
        pass
    fds_before = me.num_fds()
    children_before = {p.pid for p in me.children(recursive=True)}
    for _ in range(2):
        with Engine(model, 50, workers=2) as engine:
            engine.step(_observations(model, 50, 1, seed=11)[0])
        with pytest.raises(ObservationError), Engine(model, 50, workers=1) as engine:
            engine.step(np.zeros((3, 2), dtype=np.int64))          # an exception inside
    assert me.num_fds() <= fds_before
    leftover = {p.pid for p in me.children(recursive=True)} - children_before
    assert not [p for p in leftover if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("beliefs", ["float", "uint16"])
def test_reset_starts_a_new_episode_for_chosen_agents(beliefs: str) -> None:
    model = grid_model(5)
    n = 40
    ticks = _observations(model, n, 4, seed=11)
    fresh = Agents(model, n, InferenceConfig())
    fresh.step(ticks[3])
    reference = Agents(model, n, InferenceConfig())
    with Engine(model, n, workers=0, beliefs=beliefs) as engine:
        for obs in ticks[:3]:
            engine.step(obs)
            reference.step(obs)
        chosen = np.array([3, 17, 39])
        engine.reset(chosen, keep_action=False)
        reference.reset(chosen, keep_action=False)
        np.testing.assert_allclose(engine.qs[0][chosen], 1.0 / 25)
        actions = np.array(engine.step(ticks[3]))
        np.testing.assert_array_equal(reference.step(ticks[3]), actions)
        np.testing.assert_array_equal(actions[chosen], fresh.actions[chosen])
        np.testing.assert_allclose(engine.qs[0][chosen], fresh.qs[0][chosen], rtol=1e-3)
        with pytest.raises(ConfigError, match="agent indices must be in 0..39"):
            engine.reset(np.array([40]))


def test_warm_up_changes_nothing_a_run_can_see() -> None:
    """Two engines, one warmed up on other observations (after a reset it must keep for the
    next tick): the same actions, beliefs and tick numbers afterwards; metrics start empty."""
    model = random_model(np.random.default_rng(7), [3, 4], [3, 2], [2, 2])
    config = InferenceConfig(policy_len=2, action_selection="stochastic", alpha=2.0)
    ticks = _observations(model, 300, 5, seed=3)
    with Engine(model, 300, workers=1, config=config, seed=4, chunk=64) as cold, \
            Engine(model, 300, workers=1, config=config, seed=4, chunk=64) as warm:
        for engine in (cold, warm):
            engine.step(ticks[0])
            engine.reset(np.arange(0, 300, 7), keep_action=False)
        seconds = warm.warm_up(_observations(model, 300, 1, seed=9)[0], ticks=3)
        assert seconds > 0 and warm.tick == 1 and warm.metrics.snapshot().ticks == 0
        for t, obs in enumerate(ticks[1:]):
            np.testing.assert_array_equal(warm.step(obs), cold.step(obs))
            np.testing.assert_array_equal(warm.state.qs, cold.state.qs)
            assert len(warm.resets_before_last_tick) == (1 if t == 0 else 0)
        assert warm.tick == cold.tick == 5
        with pytest.raises(ConfigError, match="ticks must be an int >= 1"):
            warm.warm_up(ticks[0], ticks=0)
