"""An engine used from several threads: a second concurrent step is refused with a clear error,
close() works from any thread, and concurrent closes are safe."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import engine.runtime.engine as engine_module
from engine import Engine
from engine.errors import EngineStateError
from engine.runtime.shm import entries_of
from engine.runtime.worker_group import WorkerGroup
from world.models import grid_model

N = 60


def _ticks(model, count: int) -> list[np.ndarray]:  # noqa: ANN001
    rng = np.random.default_rng(3)
    return [np.stack([rng.integers(0, o, size=N) for o in model.num_obs], axis=1)
            for _ in range(count)]


def test_a_step_while_another_thread_steps_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    model = grid_model(4)
    ticks = _ticks(model, 3)
    with Engine(model, N, workers=0) as reference:
        expected = [np.array(reference.step(obs)) for obs in ticks]
    entered, release = threading.Event(), threading.Event()
    real = engine_module.process_tick

    def slow_tick(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)

    with Engine(model, N, workers=0) as engine:
        np.testing.assert_array_equal(engine.step(ticks[0]), expected[0])
        monkeypatch.setattr(engine_module, "process_tick", slow_tick)
        results: list[np.ndarray] = []
        other = threading.Thread(target=lambda: results.append(np.array(engine.step(ticks[1]))),
                                 name="stepper")
        other.start()
        assert entered.wait(30)
        qs = np.array(engine.state.qs)
        with pytest.raises(EngineStateError, match=r"Engine\.step: .*thread 'stepper'.*"
                                                   r"Engine\.step"):
            engine.step(ticks[2])
        np.testing.assert_array_equal(engine.state.qs, qs)
        release.set()
        other.join(30)
        monkeypatch.setattr(engine_module, "process_tick", real)
        np.testing.assert_array_equal(results[0], expected[1])
        assert engine.tick == 2
        np.testing.assert_array_equal(engine.step(ticks[2]), expected[2])


def test_close_from_another_thread_leaves_ctrl_c_working() -> None:
    calls: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def mine(signum: int, frame: object) -> None:
        calls.append(signum)

    try:
        for sig in previous:
            signal.signal(sig, mine)
        engine = Engine(grid_model(3), 10, workers=0).start()
        run_id = engine.run_id
        assert signal.getsignal(signal.SIGINT) is not mine        # the engine's own
        errors: list[BaseException] = []

        def close() -> None:
            try:
                engine.close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        closer = threading.Thread(target=close)
        closer.start()
        closer.join(30)
        assert not errors, errors
        assert entries_of([run_id]) == []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.raise_signal(sig)
            time.sleep(0.01)
        assert calls == [signal.SIGINT, signal.SIGTERM]            # reached the old handler
        assert engine.stop_requested is None
        assert signal.getsignal(signal.SIGINT) is mine              # and it is back
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_ctrl_c_after_close_from_another_thread_raises_keyboard_interrupt() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    engine = Engine(grid_model(3), 10, workers=0).start()
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(30)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_concurrent_closes_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    real = WorkerGroup.stop

    def slow_stop(self, control) -> None:  # noqa: ANN001
        time.sleep(0.3)                      # both closes are inside close() at once
        real(self, control)

    monkeypatch.setattr(WorkerGroup, "stop", slow_stop)
    engine = Engine(grid_model(3), 10, workers=1).start()
    run_id = engine.run_id
    errors: list[BaseException] = []

    def close() -> None:
        try:
            engine.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    closers = [threading.Thread(target=close) for _ in range(3)]
    for closer in closers:
        closer.start()
    engine.close()
    for closer in closers:
        closer.join(30)
    assert not errors, errors
    assert entries_of([run_id]) == [] and engine.run_id is None
