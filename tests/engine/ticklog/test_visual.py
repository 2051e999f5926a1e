"""The tick log's visual topics (engine/ticklog/visual.py): a grid world as a foxglove.Grid on
/world/grid and its figures on /world/stats, read by the mcap reader; replay, inspect and diff
read such a log as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from mcap.reader import make_reader

from engine import ConfigError, Engine
from engine.errors import TickLogError
from engine.ticklog.logset import open_log
from engine.ticklog.recorder import TickRecorder
from engine.ticklog.replay import replay
from engine.ticklog.schema import TickLogHeader
from engine.ticklog.visual import (
    GRID_SCHEMA_NAME,
    TOPIC_GRID,
    TOPIC_WORLD_STATS,
    VisualFrame,
    decode_grid,
    encode_grid,
    frame_of,
)
from engine.ticklog.writer import TickLogWriter
from tools.inspect.diff import first_difference
from tools.inspect.summary import summarize
from tools.inspect.text import format_summary
from world.foraging import ForagingWorld
from world.grid import GridWorld

N_AGENTS, TICKS = 60, 10


def messages(path: Path) -> tuple[dict[str, tuple[str, str, str]], dict[str, list]]:
    """Per topic: (schema name, schema encoding, message encoding), and the decoded
    messages, as the mcap package reads them."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        kinds = {ch.topic: (summary.schemas[ch.schema_id].name,
                            summary.schemas[ch.schema_id].encoding, ch.message_encoding)
                 for ch in summary.channels.values()}
        docs: dict[str, list] = {}
        for _schema, channel, message in reader.iter_messages():
            docs.setdefault(channel.topic, []).append(orjson.loads(message.data))
    return kinds, docs


def record(path: Path, visual: bool, every: int = 3) -> GridWorld:
    """TICKS ticks of a small grid world stepped without a budget (deterministic)."""
    world = GridWorld(5, N_AGENTS, seed=2)
    with Engine(world.model(), N_AGENTS, workers=0, seed=4) as engine:
        recorder = TickRecorder(engine, str(path), hz=10.0, world=world.config(),
                                snapshot_every=4, visual=world if visual else None,
                                visual_every=every)
        obs = world.reset(2)
        for _ in range(TICKS):
            obs = world.step(engine.step(obs))
            recorder.record()
        recorder.close()
    return world


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("visual")
    record(folder / "visual.mcap", True)
    record(folder / "plain.mcap", False)
    return folder / "visual.mcap", folder / "plain.mcap"


def test_the_grid_is_a_foxglove_grid_whose_cells_count_every_agent(
        logs: tuple[Path, Path]) -> None:
    kinds, docs = messages(logs[0])
    assert kinds[TOPIC_GRID] == (GRID_SCHEMA_NAME, "jsonschema", "json")
    assert kinds[TOPIC_WORLD_STATS] == ("agentloop.WorldStats", "jsonschema", "json")
    grids = docs[TOPIC_GRID]
    assert len(grids) == len(range(0, TICKS, 3))               # ticks 0, 3, 6, 9
    for doc in grids:
        assert doc["frame_id"] == "world" and doc["column_count"] == 5
        assert set(doc["timestamp"]) == {"sec", "nsec"}
        layers = decode_grid(doc)
        assert [f["name"] for f in doc["fields"]] == ["agents", "resources", "kind"]
        assert layers["agents"].shape == (5, 5) and int(layers["agents"].sum()) == N_AGENTS
    stats = docs[TOPIC_WORLD_STATS]
    assert [s["tick"] for s in stats] == [0, 3, 6, 9]
    assert all(isinstance(s["on_resource"], int) and isinstance(s["mean_energy"], float)
               for s in stats)
    ticks = docs["/agentloop/tick"]
    assert all(isinstance(t["stale_count"], int) and isinstance(t["duration_s"], float)
               and isinstance(t["level"], int) for t in ticks)
    plain_kinds, plain = messages(logs[1])
    assert TOPIC_GRID not in plain_kinds and TOPIC_GRID not in plain


def test_the_last_grid_is_the_world_as_recorded(tmp_path: Path) -> None:
    world = record(tmp_path / "last.mcap", True, every=1)
    _, docs = messages(tmp_path / "last.mcap")
    layers = decode_grid(docs[TOPIC_GRID][-1])
    np.testing.assert_array_equal(layers["agents"], world.occupancy())
    np.testing.assert_allclose(layers["resources"], world.resource_levels)
    np.testing.assert_array_equal(layers["kind"], world.kinds)


def test_grid_rows_are_flipped_so_the_worlds_row_0_is_drawn_at_the_top() -> None:
    agents = np.arange(6).reshape(2, 3)
    doc = encode_grid({"agents": agents, "flag": agents > 2, "level": agents / 2}, 1.25)
    raw = np.frombuffer(__import__("base64").b64decode(doc["data"]), dtype=np.uint8)
    stride = doc["cell_stride"]
    assert stride == 4 + 1 + 4 and doc["row_stride"] == 3 * stride
    first_cell = int.from_bytes(raw[:4].tobytes(), "little")
    assert first_cell == 3                      # data row 0 (y = 0) is the world's row 1
    assert doc["timestamp"] == {"sec": 1, "nsec": 250_000_000}
    assert [f["type"] for f in doc["fields"]] == [5, 1, 7]   # UINT32, UINT8, FLOAT32
    back = decode_grid(orjson.loads(orjson.dumps(doc)))
    np.testing.assert_array_equal(back["agents"], agents)
    np.testing.assert_array_equal(back["flag"], agents > 2)
    np.testing.assert_array_equal(back["level"], agents / 2)
    with pytest.raises(ValueError, match="one shape"):
        encode_grid({"a": np.zeros((2, 2)), "b": np.zeros((2, 3))}, 0.0)


def test_foraging_marks_the_food_patch() -> None:
    world = ForagingWorld(5, 40, seed=1)
    frame = frame_of(world)
    assert frame.grid is not None and int(frame.grid["agents"].sum()) == 40
    food = frame.grid["food"].ravel()
    assert food[world.signpost] == 3 and np.count_nonzero(food == 1) == 1
    assert frame.stats is not None and frame.stats["n_agents"] == 40


def test_replay_inspect_and_diff_read_a_log_with_the_visual_topics(
        logs: tuple[Path, Path]) -> None:
    visual, plain = logs
    result = replay(visual)
    assert result.ok and result.ticks == TICKS
    summary = summarize(visual)
    assert summary["ticks"]["count"] == TICKS and summary["snapshots"] == 3
    assert "visual     /world/grid, /world/stats every 3 ticks" in format_summary(summary)
    assert "\nvisual " not in format_summary(summarize(plain))
    assert first_difference(visual, plain) is None      # the same run, pictured or not
    with open_log(visual) as reader:
        assert len(list(reader.ticks(5))) == TICKS - 5
        snap = reader.snapshot_at_or_before(9)
        assert snap is not None and snap.tick == 8


def test_a_rotated_set_declares_the_visual_topics_in_every_file(tmp_path: Path) -> None:
    world = GridWorld(4, 50, seed=0)
    path = tmp_path / "set.mcap"
    header = TickLogHeader(n_agents=50, world=world.config())
    with TickLogWriter(path, header, max_bytes=16 << 10, visual=True) as w:
        for t in range(150):
            obs = world.step(np.full((50, 1), t % 5))
            w.write_tick(t, obs, np.full((50, 1), t % 5), visual=frame_of(world))
            if w.rotation_due():
                w.rotate([np.zeros((50, 3))])
    files = w.files                      # once closed: the writer thread opens them
    assert len(files) > 2
    grids = []
    for name in files:
        kinds, docs = messages(Path(name))
        assert kinds[TOPIC_GRID] == (GRID_SCHEMA_NAME, "jsonschema", "json")
        grids += [int(decode_grid(d)["agents"].sum()) for d in docs.get(TOPIC_GRID, [])]
    assert grids == [50] * 150
    with open_log(path) as reader:
        assert [r.tick for r in reader.ticks()] == list(range(150))


def test_bad_visual_arguments_are_refused(tmp_path: Path) -> None:
    world = GridWorld(4, 10)
    with Engine(world.model(), 10, workers=0) as engine:
        with pytest.raises(ConfigError, match="visual must be a grid world.*dict"):
            TickRecorder(engine, str(tmp_path / "a.mcap"), visual={})
        with pytest.raises(ConfigError, match="visual_every must be a whole number >= 1"):
            TickRecorder(engine, str(tmp_path / "b.mcap"), visual=world, visual_every=0)
    with TickLogWriter(tmp_path / "c.mcap", TickLogHeader(n_agents=1)) as w:
        with pytest.raises(TickLogError, match="needs TickLogWriter\\(visual=True\\)"):
            w.write_tick(0, np.zeros((1, 1)), np.zeros((1, 1)), visual=VisualFrame(None))
