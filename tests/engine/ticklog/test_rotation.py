"""Tick logs for long runs: a size cap rotates the log into a set of files that replays as one,
at most ``rotate`` files are kept, and a missing or foreign file in a set is named."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import ConfigError, Engine, InferenceConfig
from engine.errors import TickLogError
from engine.ticklog.files import base_of, member_path, members_present
from engine.ticklog.logset import open_log
from engine.ticklog.reader import TickLogReader
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from engine.ticklog.schema import TickLogHeader
from engine.ticklog.writer import TickLogWriter
from world.grid import GridWorld

AGENTS, TICKS, CAP = 120, 60, 16_000


def _record(tmp_path: Path, **rotation: int | None) -> tuple[str, str, TickRecorder]:
    """One run recorded twice: ``plain.mcap`` as one file and ``set.mcap`` with ``rotation``."""
    world = GridWorld(5, AGENTS, seed=3)
    plain, rotated = str(tmp_path / "plain.mcap"), str(tmp_path / "set.mcap")
    config = InferenceConfig(policy_len=2, action_selection="stochastic", alpha=4.0)
    with Engine(world.model(), AGENTS, workers=0, config=config, seed=9, chunk=32) as engine:
        one = TickRecorder(engine, plain, world=world.config(), snapshot_every=25)
        many = TickRecorder(engine, rotated, world=world.config(), snapshot_every=25,
                            **rotation)

        def both(info) -> None:  # noqa: ANN001
            one.record(info)
            many.record(info)

        # at a rate that holds on a loaded machine: a tick with many stale agents after calm
        # ones can pass the cap (docs/ticklog.md)
        summary = engine.run(world, hz=50, ticks=TICKS, on_tick=both)
        one.close(summary)
        many.close(summary)
    return plain, rotated, many


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A run recorded as one file and as an unpruned set, with the plain log's replay."""
    folder = tmp_path_factory.mktemp("rotation")
    plain, rotated, recorder = _record(folder, max_bytes=CAP)
    return folder, {"plain": plain, "set": rotated, "files": list(recorder.writer.files),
                    "replay": replay(plain, keep_state=True)}


def _copy_set(recorded: tuple[Path, dict], tmp_path: Path) -> list[str]:
    folder, run = recorded
    copies = []
    for path in run["files"]:
        copies.append(str(shutil.copy(path, tmp_path / os.path.basename(path))))
    return copies


def _same_replay(result, expected) -> None:  # noqa: ANN001
    assert result.ok and result.last_tick == expected.last_tick == TICKS - 1
    for name, array in expected.final_state.items():
        np.testing.assert_array_equal(result.final_state[name], array, err_msg=name)


def test_a_rotated_set_replays_exactly_as_the_single_file(recorded) -> None:  # noqa: ANN001
    _, run = recorded
    files = run["files"]
    assert len(files) >= 3 and files[0] == run["set"]
    assert files[1:] == [member_path(run["set"], i) for i in range(1, len(files))]
    assert files[1].endswith("set.001.mcap")
    ticks = []
    for i, path in enumerate(files):                    # each file is a whole log on its own
        assert os.path.getsize(path) <= CAP, path
        with TickLogReader(path) as reader:
            footer = reader.footer
            assert not reader.truncated and footer is not None
            assert reader.header.set_index == i and reader.header.set_id
            assert footer.next_file == (os.path.basename(files[i + 1]) if i + 1 < len(files)
                                        else None)
            mine = [t.tick for t in reader.ticks()]
            if i:                         # opens with the state after the previous file's last
                assert next(reader.snapshots()).tick == ticks[-1] == mine[0] - 1
            ticks += mine
    assert ticks == list(range(TICKS))
    result = replay(run["set"], keep_state=True)
    _same_replay(result, run["replay"])
    assert result.ticks == TICKS and result.first_tick == 0 and not result.started_mid_run
    assert result.files == tuple(files) and result.rotated_away == ()
    with open_log(run["set"]) as logs, TickLogReader(run["plain"]) as single:
        for a, b in zip(logs.ticks(), single.ticks(), strict=True):
            np.testing.assert_array_equal(a.actions, b.actions)
        assert logs.footer.ticks_written == TICKS and logs.footer.totals["ticks"] == TICKS
        assert logs.header.n_agents == AGENTS and logs.last_tick == TICKS - 1
        later = replay(run["set"], from_tick=TICKS - 5)
        assert later.ok and later.started_from_snapshot == logs.snapshot_at_or_before(
            TICKS - 6).tick


def test_replay_starts_from_a_later_file(recorded, tmp_path: Path) -> None:  # noqa: ANN001
    copies = _copy_set(recorded, tmp_path)
    result = replay(copies[2], keep_state=True)
    _same_replay(result, recorded[1]["replay"])
    with TickLogReader(copies[2]) as reader:
        opening = next(reader.snapshots()).tick
    assert result.started_mid_run and result.started_from_snapshot == opening
    assert result.first_tick == opening + 1 and result.files == tuple(copies[2:])


def test_a_set_whose_first_files_were_removed_replays_from_the_first_left(
        recorded, tmp_path: Path) -> None:  # noqa: ANN001
    copies = _copy_set(recorded, tmp_path)
    for path in copies[:2]:
        os.unlink(path)
    result = replay(copies[0], keep_state=True)
    _same_replay(result, recorded[1]["replay"])
    assert result.started_mid_run and result.rotated_away == tuple(copies[:2])
    assert result.files == tuple(copies[2:])


def test_a_missing_middle_file_is_named(recorded, tmp_path: Path) -> None:  # noqa: ANN001
    copies = _copy_set(recorded, tmp_path)
    os.unlink(copies[1])
    message = (f"{copies[0]}: tick log set is missing {copies[1]} (between {copies[0]} and "
               f"{copies[2]})")
    with pytest.raises(TickLogError) as raised:
        replay(copies[0])
    assert str(raised.value) == message


def test_a_missing_last_file_cuts_the_set_off(recorded, tmp_path: Path) -> None:  # noqa: ANN001
    copies = _copy_set(recorded, tmp_path)
    os.unlink(copies[-1])
    result = replay(copies[0])
    assert result.ok and result.missing_next == copies[-1] and result.files == tuple(copies[:-1])


def test_a_file_of_another_run_inside_a_set_is_refused(recorded, tmp_path: Path
                                                       ) -> None:  # noqa: ANN001
    copies = _copy_set(recorded, tmp_path)
    os.unlink(copies[1])
    TickLogWriter(copies[1], TickLogHeader(n_agents=AGENTS), max_bytes=CAP).close()
    with pytest.raises(TickLogError, match="belongs to another run's tick log"):
        replay(copies[0])


def test_rotate_keeps_the_newest_files(tmp_path: Path) -> None:
    _, rotated, recorder = _record(tmp_path, max_bytes=CAP, rotate=2)
    writer = recorder.writer
    assert len(writer.files) == 2 and len(writer.rotated_away) >= 1 and writer.still_at_path()
    assert list(members_present(rotated).values()) == writer.files
    assert not os.path.exists(rotated)
    result = replay(rotated, keep_state=True)
    assert result.ok and result.last_tick == TICKS - 1 and result.started_mid_run
    assert result.rotated_away == tuple(writer.rotated_away)
    assert writer.stats["files_removed"] == len(writer.rotated_away)


def test_a_file_removed_during_the_run_is_noticed(tmp_path: Path) -> None:
    path = str(tmp_path / "gone.mcap")
    rng = np.random.default_rng(0)
    writer = TickLogWriter(path, TickLogHeader(n_agents=50), max_bytes=9000)
    for tick in range(60):
        writer.write_tick(tick, rng.integers(0, 99, (50, 2)), rng.integers(0, 4, (50, 1)))
        if tick == 0:
            os.unlink(path)           # the first file, noticed as the writer moves on
        if writer.rotation_due():
            writer.rotate([np.zeros((50, 2))])
    writer.close()
    assert len(writer.files) > 2 and writer.lost_files() == [path]
    assert not writer.still_at_path()


def test_a_rotation_opens_its_file_only_when_a_tick_follows(tmp_path: Path) -> None:
    path = str(tmp_path / "set.mcap")
    state = [np.full((3, 2), 0.5)]
    obs, act = np.zeros((3, 1), np.int64), np.zeros((3, 1), np.int64)
    with TickLogWriter(path, TickLogHeader(n_agents=3), max_bytes=10_000) as writer:
        writer.write_tick(0, obs, act)
        writer.rotate(state)
        writer.rotate(state)             # asked twice in a row: one file
        writer.write_tick(1, obs, act)
        writer.rotate(state)             # after the last tick: no file
    assert writer.files == [path, member_path(path, 1)]
    with TickLogReader(writer.files[1]) as second:
        assert [t.tick for t in second.ticks()] == [1]
        assert [s.tick for s in second.snapshots()] == [0]
        assert second.footer.next_file is None


def test_rotation_arguments_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "x.mcap"
    for kwargs, message in (({"max_bytes": 0}, "max_bytes must be a whole number >= 1"),
                            ({"max_bytes": -5}, "max_bytes must be a whole number >= 1"),
                            ({"max_bytes": "1M"}, "max_bytes must be a whole number >= 1"),
                            ({"max_bytes": 100, "rotate": 0}, "rotate must be"),
                            ({"rotate": 3}, "rotate \\(files to keep\\) needs max_bytes")):
        with pytest.raises(TickLogError, match=message):
            TickLogWriter(path, TickLogHeader(n_agents=1), **kwargs)
        assert not path.exists()
    with Engine(GridWorld(3, 4).model(), 4, workers=0) as engine:
        with pytest.raises(ConfigError, match="TickRecorder: max_bytes must be"):
            TickRecorder(engine, str(path), max_bytes=0)
    with TickLogWriter(path, TickLogHeader(n_agents=1)) as plain:
        with pytest.raises(TickLogError, match="not given max_bytes"):
            plain.rotate()


def test_a_later_file_of_an_earlier_set_is_refused_unless_overwrite(tmp_path: Path) -> None:
    base = str(tmp_path / "run.mcap")
    stale = member_path(base, 1)
    Path(stale).write_bytes(b"an earlier set's second file")
    with pytest.raises(TickLogError, match=r"run.001.mcap' \(a later file of a set at"):
        TickLogWriter(base, TickLogHeader(n_agents=1), max_bytes=10_000)
    assert not os.path.exists(base)
    TickLogWriter(base, TickLogHeader(n_agents=1), max_bytes=10_000, overwrite=True).close()
    assert not os.path.exists(stale) and os.path.exists(base)


def test_set_file_names() -> None:
    assert member_path("a/run.mcap", 0) == "a/run.mcap"
    assert member_path("a/run.mcap", 7) == "a/run.007.mcap"
    assert member_path("a/run", 12) == "a/run.012"
    assert member_path("a/b.c/run.x.mcap", 1234) == "a/b.c/run.x.1234.mcap"
    for base, index in (("a/run.mcap", 7), ("a/run", 12), ("a/b.c/run.x.mcap", 1234)):
        assert base_of(member_path(base, index), index) == base
    assert base_of("a/other.mcap", 3) is None


def test_a_single_file_keeps_its_own_errors(tmp_path: Path) -> None:
    """What reading a corrupt, cut or missing single file says is unchanged by sets."""
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not a log at all")
    missing = tmp_path / "none.mcap"
    for path in (bad, missing):
        with pytest.raises(TickLogError) as direct:
            TickLogReader(path)
        with pytest.raises(TickLogError) as through_set:
            open_log(path)
        assert str(through_set.value) == str(direct.value)
    cut = tmp_path / "cut.mcap"
    with TickLogWriter(cut, TickLogHeader(n_agents=2)) as writer:
        writer.write_tick(0, [[0], [1]], [[0], [1]])
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) - 40])
    with open_log(cut) as logs, TickLogReader(cut) as single:
        assert logs.truncated and logs.truncated_at == single.truncated_at
        assert [t.tick for t in logs.ticks()] == [t.tick for t in single.ticks()]
