"""Fuzzing tick logs: damaged log bytes (and well-framed logs with bad message contents) read
back or raise :class:`TickLogError`, and ``replay`` returns a result or raises
:class:`TickLogError` / :class:`AgentloopError`.

Property tests (hypothesis, derandomized: the same examples on every run);
``--hypothesis-show-statistics`` shows how the examples split between the outcomes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine.errors import AgentloopError, TickLogError
from engine.ticklog import schema as ticklog
from engine.ticklog.reader import TickLogReader
from engine.ticklog.replay import replay
from engine.ticklog.schema import TickLogHeader
from tests.reliability.fuzz_support import (
    FUZZ,
    event,
    mutated,
)


def read_everything(path: Path) -> dict[int, Any]:
    """Every tick read through every reader entry point; TickLogError is the only error."""
    got: dict[int, Any] = {}
    try:
        with TickLogReader(path) as reader:
            assert isinstance(reader.header, TickLogHeader)
            reader.footer  # noqa: B018
            reader.last_tick  # noqa: B018
            for record in reader.ticks():
                got.setdefault(record.tick, (record.observations, record.actions))
            list(reader.ticks(4))
            list(reader.snapshots())
            reader.snapshot_at_or_before(4)
            reader.snapshot_at_or_before(100)
    except TickLogError as exc:
        assert str(exc)
        event(f"TickLogError after {len(got)} ticks")
        return got
    event(f"read {len(got)} ticks")
    return got


def _records(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level MCAP record of an intact file."""
    out, pos = [], 8
    while pos + 9 <= len(data) - 8:
        _op, length = struct.unpack_from("<BQ", data, pos)
        out.append((pos, pos + 9 + length))
        pos += 9 + length
    return out


@st.composite
def mutated_log(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte mutations, or whole MCAP records duplicated, dropped or swapped."""
    if draw(st.booleans()):
        return draw(mutated(data))
    records = _records(data)
    i = draw(st.integers(0, len(records) - 1))
    j = draw(st.integers(0, len(records) - 1))
    (a, b), (c, d) = records[i], records[j]
    op = draw(st.sampled_from(["duplicate", "drop", "swap"]))
    if op == "duplicate":
        return data[:c] + data[a:b] + data[c:]
    if op == "drop":
        return data[:a] + data[b:]
    if i > j:
        (a, b), (c, d) = (c, d), (a, b)
    return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]


@settings(FUZZ, max_examples=600)
@given(data=st.data())
def test_damaged_tick_logs_read_or_raise_ticklog_error(
        plain_log: tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]],
        data: st.DataObject) -> None:
    path, ticks = plain_log
    damaged = path.with_name("damaged.mcap")
    damaged.write_bytes(data.draw(mutated_log(path.read_bytes())))
    for tick, (obs, act) in read_everything(damaged).items():   # chunk CRCs guard content
        np.testing.assert_array_equal(obs, ticks[tick][0])
        np.testing.assert_array_equal(act, ticks[tick][1])


def test_the_intact_logs_read_completely(
        plain_log: tuple[Path, dict[int, tuple[np.ndarray, np.ndarray]]],
        replayable_log: Path) -> None:
    path, ticks = plain_log
    assert sorted(read_everything(path)) == sorted(ticks)
    with TickLogReader(path) as reader:
        assert not reader.truncated and reader.footer is not None
        assert [s.tick for s in reader.snapshots()] == [2, 5]
    assert sorted(read_everything(replayable_log)) == list(range(6))


@settings(FUZZ, max_examples=80)
@given(data=st.data(), from_tick=st.sampled_from([None, 3, 5]))
def test_replay_of_damaged_logs_returns_or_raises_agentloop_error(
        replayable_log: Path, data: st.DataObject, from_tick: int | None) -> None:
    damaged = replayable_log.with_name("damaged.mcap")
    damaged.write_bytes(data.draw(mutated_log(replayable_log.read_bytes())))
    try:
        result = replay(str(damaged), from_tick=from_tick)
    except AgentloopError as exc:     # TickLogError is one
        assert str(exc)
        event(f"replay: {type(exc).__name__}")
        return
    event(f"replay: {result.ticks} ticks")
    assert result.ticks <= 6
    if result.ticks and not result.truncated:
        assert result.ok



# ------------------------------------------------------- tick logs with well-framed bad content
def _messages(path: Path) -> list[tuple[str, int, int, bytes]]:
    """(topic, sequence, log time, JSON payload) of every message of a log, in order."""
    with open(path, "rb") as f:
        return [(channel.topic, m.sequence, m.log_time, bytes(m.data))
                for _, channel, m in make_reader(f).iter_messages()]


def _write_messages(path: Path, messages: list[tuple[str, int, int, bytes]]) -> None:
    """A tick log with the writer's channels holding exactly ``messages`` (CRCs intact)."""
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=2048, compression=CompressionType.ZSTD)
        writer.start(library="fuzz")
        channels = {}
        for topic, schema in ticklog._SCHEMAS.items():
            sid = writer.register_schema(schema["title"], "jsonschema", orjson.dumps(schema))
            channels[topic] = writer.register_channel(topic, "json", sid)
        for topic, seq, log_time, payload in messages:
            writer.add_message(channels[topic], log_time, payload, log_time, seq)
        writer.finish()


#: JSON values for log fields; integers stay small (n_agents drives memory) bar a few giants
log_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.sampled_from([2**63, -2**63, 10**20])
    | st.floats(-1e3, 1e3) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)

array_docs = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["|u1", "<i8", "<u8", "<f8", "|b1", "<c16", "|O", "<U3", "|V8",
                               "float", "nope", ">i4"]) | log_values,
     "shape": st.lists(st.integers(-1, 6), max_size=3) | log_values},
    optional={"data": st.lists(st.integers(-300, 300) | st.floats(allow_nan=False), max_size=12)
              | log_values,
              "b64": st.sampled_from(["", "AAAA", "!!", "AAECAwQ="]) | log_values})


@st.composite
def mutated_doc(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with a field replaced (by any JSON value, or a malformed array), removed or
    added, or the whole document replaced."""
    if not isinstance(doc, dict) or draw(st.integers(0, 9)) == 0:
        return draw(log_values)
    doc = dict(doc)
    keys = sorted(doc)
    key = draw(st.sampled_from(keys + ["unknown_field"]))
    op = draw(st.sampled_from(["value", "array", "drop", "nested"]))
    if op == "drop" and key in doc:
        del doc[key]
    elif op == "array":
        doc[key] = draw(array_docs)
    elif op == "nested" and isinstance(doc.get(key), dict):
        doc[key] = draw(mutated_doc(doc[key]))
    elif op == "nested" and isinstance(doc.get(key), list) and doc[key]:
        items = list(doc[key])
        i = draw(st.integers(0, len(items) - 1))
        items[i] = draw(mutated_doc(items[i]))
        doc[key] = items
    else:
        doc[key] = draw(log_values)
    return doc


@settings(FUZZ, max_examples=200)
@given(data=st.data(), from_tick=st.sampled_from([None, 3, 5]))
def test_well_framed_logs_with_bad_content_raise_agentloop_errors(
        replayable_log: Path, data: st.DataObject, from_tick: int | None) -> None:
    """Message contents the framing and CRCs cannot catch (another writer, a bug, tampering):
    reading raises only TickLogError, replay only TickLogError or AgentloopError."""
    messages = _messages(replayable_log)
    for _ in range(data.draw(st.integers(1, 2))):
        i = data.draw(st.integers(0, len(messages) - 1))
        topic, seq, log_time, payload = messages[i]
        try:
            original = json.loads(payload)
        except ValueError:                  # replaced by raw bytes in the first round
            original = None
        doc = data.draw(mutated_doc(original))
        if data.draw(st.integers(0, 19)) == 0:
            messages[i] = (topic, seq, log_time, data.draw(st.binary(max_size=20)))
        else:
            messages[i] = (topic, seq, log_time, json.dumps(doc).encode())
    damaged = replayable_log.with_name("bad-content.mcap")
    _write_messages(damaged, messages)
    read_everything(damaged)
    try:
        replay(str(damaged), from_tick=from_tick)
    except AgentloopError as exc:
        event(f"replay: {type(exc).__name__}")
        return
    event("replay: returned")
