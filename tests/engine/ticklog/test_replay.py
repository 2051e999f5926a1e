"""Recording a run into a tick log and replaying it: every action reproduced, or the first
divergence named with the beliefs behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import ConfigError, Engine, InferenceConfig
from engine.runtime.degrade import ROTATING_FRACTION, SHORTER_HORIZON
from engine.ticklog.reader import TickLogReader
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from engine.ticklog.writer import TickLogWriter
from tests.cli_process import live_run
from tests.logs import expect_log
from world.foraging import ForagingWorld
from world.grid import GridWorld

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_fixed_rate_runs_replay_exactly_for_any_worker_count(tmp_path: Path,
                                                             workers: int) -> None:
    world = GridWorld(6, 600, seed=1)
    path = str(tmp_path / "run.mcap")
    config = InferenceConfig(policy_len=2, action_selection="stochastic", alpha=4.0)
    with Engine(world.model(), 600, workers=workers, config=config, seed=5,
                chunk=64) as engine:
        recorder = TickRecorder(engine, path, hz=200, world=world.config(), snapshot_every=10)
        summary = engine.run(world, hz=200, ticks=40, on_tick=recorder)
        recorder.close(summary)
    result = replay(path)
    assert result.ok and result.ticks == 40 and (result.first_tick, result.last_tick) == (0, 39)
    assert not result.truncated
    with TickLogReader(path) as reader:
        assert reader.footer is not None and reader.footer.totals["ticks"] == 40
        assert reader.header.world["name"] == "grid"


def test_resets_between_ticks_are_recorded_and_replayed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine.reset between ticks goes into the next tick's record; replay repeats it (a log
    without the resets diverges at the first tick after one)."""
    world = GridWorld(5, 200, seed=4)
    model = world.model()
    path = str(tmp_path / "run.mcap")
    rng = np.random.default_rng(8)
    with Engine(model, 200, workers=1, config=InferenceConfig(policy_len=2), seed=6,
                chunk=64) as engine:
        recorder = TickRecorder(engine, path, world=world.config(), snapshot_every=4)
        for tick in range(10):
            if tick in (3, 7):
                engine.reset(np.arange(0, 200, 3), keep_action=tick == 3)
            if tick == 5:
                engine.reset(keep_action=False)
            obs = np.stack([rng.integers(0, o, size=200) for o in model.num_obs], axis=1)
            engine.step(obs)
            recorder.record()
        recorder.close()
    with TickLogReader(path) as reader:
        resets = {r.tick: [(len(a), keep) for a, keep in r.resets] for r in reader.ticks(0)}
    assert resets[3] == [(67, True)] and resets[5] == [(200, False)]
    assert resets[7] == [(67, False)] and all(not resets[t] for t in (0, 1, 2, 4, 6, 8, 9))
    result = replay(path)
    assert result.ok and result.ticks == 10, result
    from_snapshot = replay(path, from_tick=6)
    assert from_snapshot.ok and from_snapshot.first_tick == 5
    monkeypatch.setattr(Engine, "reset", lambda *args, **kwargs: None)
    ignored = replay(path)
    assert not ignored.ok and ignored.divergence.tick == 3     # what replay did before


def test_a_pymdp1_population_replays_exactly(tmp_path: Path) -> None:
    world = GridWorld(5, 300, seed=2)
    path = str(tmp_path / "run.mcap")
    config = InferenceConfig.pymdp1(policy_len=2, action_selection="stochastic")
    with Engine(world.model(), 300, workers=1, config=config, seed=3, chunk=64) as engine:
        recorder = TickRecorder(engine, path, hz=200, world=world.config(), snapshot_every=5)
        summary = engine.run(world, hz=200, ticks=12, on_tick=recorder)
        recorder.close(summary)
    with TickLogReader(path) as reader:
        assert InferenceConfig.from_dict(reader.header.config) == config
    result = replay(path)
    assert result.ok and result.ticks == 12


def test_forced_degradation_and_deadline_stale_sets_replay(tmp_path: Path) -> None:
    """Levels and stale sets that came from timing are applied as recorded."""
    world = ForagingWorld(5, 900, seed=2)
    path = str(tmp_path / "degraded.mcap")
    with Engine(world.model(), 900, workers=0, config=InferenceConfig(policy_len=2),
                chunk=100, degrade=False) as engine:
        recorder = TickRecorder(engine, path, snapshot_every=0)
        obs = world.reset(0)
        levels = [0, SHORTER_HORIZON, ROTATING_FRACTION, ROTATING_FRACTION, 1, 0, 4, 0]
        for k, level in enumerate(levels):
            budget = 0.0 if k == 5 else None          # tick 5 stops after its first chunk
            actions = engine.step(obs, budget_s=budget, level=level)
            recorder.record()
            obs = world.step(actions)
        recorder.close()
        stale_counts = [len(r.stale_agents) for r in TickLogReader(path).ticks()]
    assert stale_counts[2] > 0 and stale_counts[5] == 800 and stale_counts[6] == 900
    result = replay(path)
    assert result.ok and result.ticks == len(levels)


def _rewrite(src: str, dst: str, alter) -> None:  # noqa: ANN001
    """Copy a log record by record, letting ``alter(record)`` change a tick's arrays."""
    with TickLogReader(src) as reader, TickLogWriter(dst, reader.header) as writer:
        for record in reader.ticks():
            obs, actions = alter(record)
            writer.write_tick(record.tick, obs, actions, wall_time=record.wall_time,
                              duration_s=record.duration_s, level=record.level,
                              stale_agents=record.stale_agents, timings=record.timings)


def test_an_altered_action_is_reported_with_tick_agent_and_beliefs(tmp_path: Path) -> None:
    world = GridWorld(5, 200, seed=3)
    good, bad = str(tmp_path / "good.mcap"), str(tmp_path / "bad.mcap")
    with Engine(world.model(), 200, workers=0, seed=1) as engine:
        recorder = TickRecorder(engine, good, world=world.config())
        engine.run(world, hz=1000, ticks=12, on_tick=recorder)
        recorder.close()

    def alter(record):  # noqa: ANN001, ANN202
        actions = np.array(record.actions)
        if record.tick == 7:
            actions[42, 0] = (actions[42, 0] + 1) % 5
        return record.observations, actions

    _rewrite(good, bad, alter)
    result = replay(bad)
    assert not result.ok and result.ticks == 7
    d = result.divergence
    assert (d.tick, d.agent, d.factor) == (7, 42, 0) and d.expected != d.actual
    assert abs(sum(d.posterior[0]) - 1) < 1e-5 and len(d.prior[0]) == 25 and len(d.q_pi) == 5
    report = d.report()
    assert "desync at tick 7, agent 42, factor 0" in report and "beliefs before" in report


def test_replay_from_a_snapshot(tmp_path: Path) -> None:
    world = GridWorld(5, 300, seed=4)
    path = str(tmp_path / "snap.mcap")
    with Engine(world.model(), 300, workers=0, seed=2,
                config=InferenceConfig(action_selection="stochastic")) as engine:
        recorder = TickRecorder(engine, path, snapshot_every=8)
        engine.run(world, hz=1000, ticks=30, on_tick=recorder)
        recorder.close()
    result = replay(path, from_tick=20)
    assert result.ok and result.started_from_snapshot == 16
    assert (result.first_tick, result.last_tick, result.ticks) == (17, 29, 13)


def test_recorder_refuses_an_existing_log_unless_overwrite(tmp_path: Path) -> None:
    from engine.errors import TickLogError
    world = GridWorld(5, 10)
    path = tmp_path / "kept.mcap"
    path.write_bytes(b"an earlier log")
    with Engine(world.model(), 10, workers=0) as engine:
        with pytest.raises(TickLogError, match="already exists"):
            TickRecorder(engine, str(path))
        assert path.read_bytes() == b"an earlier log"
        recorder = TickRecorder(engine, str(path), snapshot_every=0, overwrite=True)
        recorder.close(engine.run(world, hz=100, ticks=3, on_tick=recorder))
    assert replay(str(path)).ticks == 3


def test_recorder_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    from engine import Population
    world = GridWorld(5, 10)
    engine = Engine(populations=[Population("a", world.model(), 5),
                                 Population("b", world.model(), 5)], workers=0)
    with pytest.raises(ConfigError, match="one population"):
        TickRecorder(engine, str(tmp_path / "x.mcap"))
    with Engine(world.model(), 10, workers=1) as engine, \
            pytest.raises(ConfigError, match="workers=0"):
        engine.step(world.reset(0), stale=np.array([1]))


def test_sigkilled_run_leaves_a_log_that_replays_up_to_its_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    with live_run("--agents", "2000", "--ticks", "100000", "--hz", "50", "--log", str(path),
                  "--snapshot-every", "25") as proc:
        time.sleep(2.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    result = replay(str(path))
    assert result.ok and result.truncated and result.ticks >= 50
    subprocess.run([sys.executable, "-m", "tools", "shm", "clean"], cwd=REPO, capture_output=True,
                   check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def _record_device_run(path: str, fail_at: int | None = None, kernel: str = "array"
                       ) -> tuple[Engine, dict[str, np.ndarray]]:
    """A grid population on the array backend (NumPy), recorded for 12 ticks of its world;
    the device fails in tick ``fail_at`` when given. Returns the final state."""
    world = GridWorld(5, 300, seed=4)
    config = InferenceConfig(policy_len=2, action_selection="stochastic", alpha=4.0)
    with Engine(world.model(), 300, workers=0, config=config, seed=6, chunk=64,
                backend="xp-numpy", xp_kernel=kernel, refresh_every=4) as engine:
        engine.devices[0].fail_at_tick = fail_at
        recorder = TickRecorder(engine, path, world=world.config(), snapshot_every=5)
        obs = world.reset(0)
        for _ in range(12):
            if fail_at is not None and engine.tick == fail_at:
                with expect_log("agentloop.device", "the device failed"):
                    actions = engine.step(obs)
            else:
                actions = engine.step(obs)
            recorder.record()
            obs = world.step(actions)
        recorder.close()
        return engine, engine.agent_state()


@pytest.mark.parametrize("kernel", ["array", "fused"])
def test_a_device_population_replays_on_its_own_backend(tmp_path: Path, kernel: str) -> None:
    """The header names the backend and array kernel; replay rebuilds the population on them,
    so it runs the code the live run ran (the CPU kernels keep beliefs quantized between ticks,
    the device keeps them in float32)."""
    path = str(tmp_path / "device.mcap")
    _, final = _record_device_run(path, kernel=kernel)
    with TickLogReader(path) as reader:
        assert reader.header.extra["backend"] == "xp-numpy"
        assert reader.header.extra["xp_kernel"] == kernel
    result = replay(path, keep_state=True)
    assert result.ok and result.ticks == 12 and result.unverified == ()
    for name, array in final.items():
        np.testing.assert_array_equal(result.final_state[name], array, err_msg=name)
    assert replay(path, from_tick=6).started_from_snapshot == 5


def test_a_failover_is_marked_and_replay_continues_from_its_snapshot(tmp_path: Path) -> None:
    """The device fails in tick 7: the log marks the tick and holds a snapshot of it; replay
    moves the population to the CPU as the live run did, takes tick 7 from the log (it was
    computed from a copy of the state replay does not have) and checks every other tick."""
    path = str(tmp_path / "failover.mcap")
    _, final = _record_device_run(path, fail_at=7)
    with TickLogReader(path) as reader:
        marks = {r.tick: r.failover for r in reader.ticks()}
        assert [t for t, m in marks.items() if m] == [7]
        assert "DeviceFault" in marks[7]
        assert reader.snapshot_at_or_before(7).tick == 7
    result = replay(path, keep_state=True)
    assert result.ok and result.ticks == 11 and result.unverified == (7,)
    assert (result.first_tick, result.last_tick) == (0, 11)
    for name, array in final.items():
        np.testing.assert_array_equal(result.final_state[name], array, err_msg=name)
    for from_tick, snapshot in ((6, 5), (9, 7), (11, 10)):     # before, at and after it
        part = replay(path, from_tick=from_tick, keep_state=True)
        assert part.ok and part.started_from_snapshot == snapshot, (from_tick, part)
        np.testing.assert_array_equal(part.final_state["qs"], final["qs"])


def test_a_failover_without_its_snapshot_is_a_clear_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from engine import AgentloopError  # noqa: PLC0415

    path = str(tmp_path / "no-snapshot.mcap")
    monkeypatch.setattr(TickLogWriter, "write_beliefs", lambda *args, **kwargs: None)
    _record_device_run(path, fail_at=3)
    with pytest.raises(AgentloopError, match="failed over to the CPU in tick 3.*no snapshot"):
        replay(path)


def test_inspect_names_the_backend_and_the_failover(tmp_path: Path) -> None:
    from tools.inspect.summary import summarize  # noqa: PLC0415
    from tools.inspect.text import format_summary  # noqa: PLC0415

    path = str(tmp_path / "failover.mcap")
    _record_device_run(path, fail_at=2, kernel="fused")
    summary = summarize(path)
    assert summary["failovers"] == [{"tick": 2, "error": "DeviceFault: injected device fault "
                                                         "at tick 2"}]
    text = format_summary(summary)
    assert "on xp-numpy (fused kernel)" in text
    assert "failover   tick 2: the device failed (DeviceFault" in text


def test_the_replay_command_lists_the_unverified_tick(tmp_path: Path) -> None:
    import io  # noqa: PLC0415
    from contextlib import redirect_stderr, redirect_stdout  # noqa: PLC0415

    from tools.cli import main  # noqa: PLC0415

    path = str(tmp_path / "failover.mcap")
    _record_device_run(path, fail_at=4)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["replay", path])
    assert code == 0, err.getvalue()
    assert "replay ok: 11 ticks, ticks 0-11" in out.getvalue()
    assert "not recomputed: tick 4 (the device failed over" in out.getvalue()
