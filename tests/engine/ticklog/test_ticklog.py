"""Tick log (engine/ticklog/): round trips, crash tolerance, corrupt and foreign files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import AgentloopError, TickLogError
from engine.ticklog import schema as ticklog
from engine.ticklog.reader import TickLogReader
from engine.ticklog.schema import INLINE_MAX, BeliefSnapshot, TickLogHeader, TickRecord
from engine.ticklog.writer import TickLogWriter, log_in_use

ROOT = Path(__file__).resolve().parents[3]


def header(n: int = 6, **kw: object) -> TickLogHeader:
    base: dict = dict(n_agents=n, hz=10.0, seed=7, workers=2, model_hash="abc123",
                      model_npz=b"PK\x03\x04 fake npz bytes \x00\xff", config={"policy_len": 1},
                      world={"name": "grid", "size": 10}, extra={"note": "test"})
    base.update(kw)
    return TickLogHeader(**base)


def obs_for(t: int, n: int) -> np.ndarray:
    return ((np.arange(n * 2).reshape(n, 2) + t) % 100).astype(np.int64)


def act_for(t: int, n: int) -> np.ndarray:
    return ((np.arange(n) + t) % 5).reshape(n, 1).astype(np.int64)


def write_log(path: Path, ticks: int, n: int = 6, snapshot_every: int = 0,
              chunk_size: int = 1 << 20, close: bool = True) -> TickLogWriter:
    w = TickLogWriter(path, header(n), snapshot_every=snapshot_every, chunk_size=chunk_size)
    for t in range(ticks):
        w.write_tick(t, obs_for(t, n), act_for(t, n), wall_time=1000.0 + t / 10,
                     duration_s=0.01, level=t % 3, stale_agents=[t % n] if t % 4 == 0 else None,
                     timings={"step": 0.001 * t})
        if w.snapshot_due(t):
            w.write_beliefs(t, [np.full((n, 3), t, np.float32), np.full((n, 2), t, np.uint16)],
                            {"codec": "test"})
    if close:
        w.close({"ticks": ticks, "levels": {0: 1, 1: 2}})
    return w


def check_tick(rec: TickRecord, n: int = 6) -> None:
    t = rec.tick
    np.testing.assert_array_equal(rec.observations, obs_for(t, n))
    np.testing.assert_array_equal(rec.actions, act_for(t, n))
    assert rec.wall_time == 1000.0 + t / 10 and rec.level == t % 3
    assert rec.duration_s == 0.01 and rec.timings == {"step": 0.001 * t}
    assert list(rec.stale_agents) == ([t % n] if t % 4 == 0 else [])


def test_round_trip_every_record(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    write_log(path, 12, snapshot_every=5)
    with TickLogReader(path) as r:
        h = r.header
        assert h.n_agents == 6 and h.hz == 10.0 and h.seed == 7 and h.workers == 2
        assert h.model_hash == "abc123" and h.model_npz == b"PK\x03\x04 fake npz bytes \x00\xff"
        assert h.config == {"policy_len": 1} and h.world == {"name": "grid", "size": 10}
        assert h.extra == {"note": "test"} and h.format_version == 1
        assert isinstance(h.engine_version, str) and h.created_unix is not None
        ticks = list(r.ticks())
        assert [t.tick for t in ticks] == list(range(12))
        for rec in ticks:
            check_tick(rec)
            assert rec.observations.dtype == np.uint8  # compacted
            assert not rec.observations.flags.writeable
        snaps = list(r.snapshots())
        assert [s.tick for s in snaps] == [0, 5, 10]
        s = snaps[1]
        assert isinstance(s, BeliefSnapshot) and s.meta == {"codec": "test"}
        assert s.arrays[0].dtype == np.float32 and s.arrays[1].dtype == np.uint16
        np.testing.assert_array_equal(s.arrays[0], np.full((6, 3), 5, np.float32))
        assert r.footer is not None
        assert r.footer.totals == {"ticks": 12, "levels": {"0": 1, "1": 2}}  # JSON keys
        assert r.footer.ticks_written == 12 and r.footer.snapshots_written == 3
        assert r.footer.error is None
        assert not r.truncated and r.truncated_at is None and r.last_tick == 11


def test_large_and_odd_arrays_round_trip(tmp_path: Path) -> None:
    n = INLINE_MAX * 4  # base64 path
    path = tmp_path / "big.mcap"
    rng = np.random.default_rng(0)
    obs = rng.integers(-3, 70000, (n, 3))
    obs[0, 0] = -3  # needs int32
    act = rng.integers(0, 5, (n, 2)).astype(np.int16)
    beliefs = [rng.random((n, 4)).astype(np.float32), np.array([np.nan, np.inf, -0.0])]
    with TickLogWriter(path, header(n)) as w:
        w.write_tick(3, obs, act, stale_agents=np.arange(n, dtype=np.int64))
        w.write_beliefs(3, beliefs, {"codec": "float32"})
    with TickLogReader(path) as r:
        (rec,) = list(r.ticks())
        assert rec.observations.dtype == np.int32 and rec.actions.dtype == np.uint8
        np.testing.assert_array_equal(rec.observations, obs)
        np.testing.assert_array_equal(rec.actions, act)
        np.testing.assert_array_equal(rec.stale_agents, np.arange(n))
        (snap,) = list(r.snapshots())
        np.testing.assert_array_equal(snap.arrays[0], beliefs[0])
        np.testing.assert_array_equal(snap.arrays[1], beliefs[1])  # NaN, inf exact
        assert r.footer is not None and r.footer.totals == {}


def test_opens_with_the_mcap_library(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    path = tmp_path / "run.mcap"
    write_log(path, 5, snapshot_every=2)
    with open(path, "rb") as fh:
        reader = make_reader(fh)
        topics = [(ch.topic, sch.encoding, ch.message_encoding)
                  for sch, ch, _ in reader.iter_messages(log_time_order=False)]
    assert topics[0] == ("/agentloop/header", "jsonschema", "json")
    assert [t for t, _, _ in topics].count("/agentloop/tick") == 5
    assert topics[-1][0] == "/agentloop/footer"


def test_writes_level_1_zstd_without_touching_the_mcap_package(tmp_path: Path) -> None:
    """Tick logs compress chunks at zstd level 1 through a private copy of ``mcap.writer``:
    the package's own module (any other MCAP writer in the process) keeps its zstandard."""
    import mcap.writer
    import zstandard
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader

    from engine.ticklog.mcapfile import ZSTD_LEVEL

    path = tmp_path / "run.mcap"
    write_log(path, 40, snapshot_every=0)
    assert mcap.writer.zstandard is zstandard
    with open(path, "rb") as fh:
        chunks = [r for r in StreamReader(fh, emit_chunks=True).records
                  if isinstance(r, Chunk)]
    assert chunks
    for chunk in chunks:
        data = zstandard.decompress(chunk.data, max_output_size=chunk.uncompressed_size)
        assert chunk.data == zstandard.compress(data, level=ZSTD_LEVEL)
    assert ZSTD_LEVEL == 1


def test_many_ticks_and_seeking(tmp_path: Path) -> None:
    path = tmp_path / "many.mcap"
    write_log(path, 3000, snapshot_every=100, chunk_size=4096)
    with TickLogReader(path) as r:
        assert len(r._chunks) > 20  # many chunks: exercises the seek
        assert r.last_tick == 2999 and not r.truncated
        assert [t.tick for t in r.ticks()] == list(range(3000))
        for start in (0, 1, 999, 1000, 2500, 2999):
            got = r.ticks(start)
            first = next(got)
            assert first.tick == start
            check_tick(first)
        assert list(r.ticks(3000)) == []


def test_snapshot_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticklog, "SNAPSHOT_PART_BYTES", 1000)
    n, path = 1000, tmp_path / "parts.mcap"
    rng = np.random.default_rng(3)
    snaps = {t: [rng.random((n, 5)).astype(np.float32), rng.integers(0, 9, (n, 3, 2)),
                 np.arange(4)] for t in (0, 7, 14)}
    with TickLogWriter(path, header(n), chunk_size=4000) as w:
        for t in range(20):
            w.write_tick(t, obs_for(t, n), act_for(t, n))
            if t in snaps:
                w.write_beliefs(t, snaps[t], {"codec": "float32", "t": t})
        w.write_beliefs(19, [np.zeros(2)])
        with pytest.raises(TickLogError, match="greater than the last snapshot"):
            w.write_beliefs(19, [np.zeros(2)])
    with TickLogReader(path) as r:
        got = list(r.snapshots())
        assert [s.tick for s in got] == [0, 7, 14, 19]
        for s in got[:3]:
            assert s.meta == {"codec": "float32", "t": s.tick}
            for a, b in zip(s.arrays, snaps[s.tick], strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)
        for tick, want in ((6, 0), (7, 7), (13, 7), (18, 14), (19, 19)):
            assert r.snapshot_at_or_before(tick).tick == want  # type: ignore[union-attr]
        assert list(r.ticks(15))[0].tick == 15


def test_snapshot_lookup(tmp_path: Path) -> None:
    path = tmp_path / "snap.mcap"
    write_log(path, 400, snapshot_every=25, chunk_size=2048)
    with TickLogReader(path) as r:
        for tick in (0, 1, 24, 25, 26, 199, 200, 399, 10_000):
            s = r.snapshot_at_or_before(tick)
            assert s is not None and s.tick == min(tick // 25 * 25, 375)
            np.testing.assert_array_equal(s.arrays[1], np.full((6, 2), s.tick, np.uint16))
    path2 = tmp_path / "late.mcap"
    with TickLogWriter(path2, header()) as w:
        for t in range(10):
            w.write_tick(t, obs_for(t, 6), act_for(t, 6))
        w.write_beliefs(9, [np.zeros(3)])
    with TickLogReader(path2) as r:
        assert r.snapshot_at_or_before(8) is None
        assert r.snapshot_at_or_before(9).tick == 9  # type: ignore[union-attr]
    path3 = tmp_path / "none.mcap"
    write_log(path3, 10)
    with TickLogReader(path3) as r:
        assert r.snapshot_at_or_before(5) is None and list(r.snapshots()) == []


def test_truncated_at_many_cut_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticklog, "SNAPSHOT_PART_BYTES", 40)  # 3-part snapshots
    path = tmp_path / "full.mcap"
    write_log(path, 120, snapshot_every=7, chunk_size=1024)
    data = path.read_bytes()
    with TickLogReader(path) as r:
        header_end = r._chunks[0].offset + 9 + r._chunks[0].length
    cut_path = tmp_path / "cut.mcap"
    cuts = sorted(set(range(0, header_end + 40)) | set(range(header_end, len(data), 41))
                  | {len(data) - k for k in range(1, 40)})
    seen_counts = set()
    for cut in cuts:
        cut_path.write_bytes(data[:cut])
        if cut < header_end:
            with pytest.raises(TickLogError, match="offset"):
                TickLogReader(cut_path)
            continue
        with TickLogReader(cut_path) as r:
            assert r.truncated and r.truncated_at is not None and r.truncated_at <= cut
            ticks = [t.tick for t in r.ticks()]
            assert ticks == list(range(len(ticks)))
            assert r.last_tick == (ticks[-1] if ticks else None)
            snaps = [s.tick for s in r.snapshots()]
            assert snaps == list(range(0, 7 * len(snaps), 7))
            last = r.snapshot_at_or_before(10_000)
            assert (last.tick if last else None) == (snaps[-1] if snaps else None)
            if last is not None:
                np.testing.assert_array_equal(last.arrays[0], np.full((6, 3), last.tick))
            seen_counts.add(len(ticks))
            if len(ticks) < 120:
                assert r.footer is None
    assert len(seen_counts) > 10 and 120 in seen_counts


def test_sigkill_loses_at_most_a_second(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from engine.ticklog.schema import TickLogHeader
        from engine.ticklog.writer import TickLogWriter
        w = TickLogWriter({str(path)!r}, TickLogHeader(n_agents=50, hz=50.0))
        t0 = time.monotonic()
        for t in range(100000):
            w.write_tick(t, np.full((50, 2), t % 7), np.full((50, 1), t % 5))
            print(t, flush=True)
            time.sleep(max(0.0, t0 + (t + 1) / 50 - time.monotonic()))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "0"  # started (imports done)
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read().split()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last_sent = int(rest[-1]) if rest else 0
    assert last_sent >= 50
    with TickLogReader(path) as r:
        assert r.truncated and r.footer is None
        ticks = [t.tick for t in r.ticks()]
        assert ticks == list(range(len(ticks)))
        assert r.last_tick is not None and r.last_tick >= last_sent - 50  # <= 1 s at 50 Hz
        assert r.header.n_agents == 50


def test_live_file_is_readable_after_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "live.mcap"
    w = TickLogWriter(path, header(), flush_every_s=0.05)
    for t in range(5):
        w.write_tick(t, obs_for(t, 6), act_for(t, 6))
    time.sleep(0.3)
    with TickLogReader(path) as r:
        assert r.truncated and r.last_tick == 4 and r.footer is None
    w.close()
    with TickLogReader(path) as r:
        assert not r.truncated and r.footer is not None


def test_corrupt_bytes_raise_tick_log_error_or_read(tmp_path: Path) -> None:
    path = tmp_path / "good.mcap"
    write_log(path, 60, snapshot_every=10, chunk_size=800)
    data = path.read_bytes()
    bad = tmp_path / "bad.mcap"
    rng = np.random.default_rng(1)
    errors = 0
    positions = list(range(8, len(data), max(1, len(data) // 400)))
    for i, pos in enumerate(positions):
        corrupted = bytearray(data)
        if i % 2:
            corrupted[pos] ^= 0xFF
        else:
            corrupted[pos:pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        bad.write_bytes(bytes(corrupted[:len(data)]))
        try:
            with TickLogReader(bad) as r:
                list(r.ticks())
                list(r.snapshots())
                r.snapshot_at_or_before(30)
                _ = r.footer, r.last_tick
        except TickLogError as exc:
            assert "offset" in str(exc), exc
            errors += 1
    assert errors > len(positions) // 4


@pytest.mark.parametrize("content,expected", [
    (b"", "offset 0"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "expected the MCAP magic .* at offset 0"),
    (b"\x89MCA", "offset 0"),
    (bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8)), "offset 0"),
    (b"\x89MCAP0\r\n" + bytes(64), "offset 8"),
    (b"\x89MCAP0\r\n", "offset 8"),
])
def test_foreign_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(TickLogError, match=expected) as info:
        TickLogReader(path)
    assert isinstance(info.value, AgentloopError)


def test_foreign_mcap_file(tmp_path: Path) -> None:
    from mcap.writer import Writer

    path = tmp_path / "other.mcap"
    with open(path, "wb") as fh:
        w = Writer(fh)
        w.start()
        sid = w.register_schema("x", "jsonschema", b"{}")
        cid = w.register_channel("/camera", "json", sid)
        w.add_message(cid, 1, b"{}", 1)
        w.finish()
    with pytest.raises(TickLogError, match="not an agentloop tick log.*offset"):
        TickLogReader(path)


def test_missing_file_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(TickLogError, match="nowhere.mcap"):
        TickLogReader(tmp_path / "nowhere.mcap")
    target = tmp_path / "no-such-dir" / "run.mcap"
    with pytest.raises(TickLogError, match="no-such-dir/run.mcap"):
        TickLogWriter(target, header())
    with pytest.raises(TickLogError, match=str(tmp_path)):
        TickLogWriter(tmp_path, header())  # a directory
    with pytest.raises(TickLogError, match="header"):
        TickLogWriter(tmp_path / "h.mcap", header(config={"x": object()}))
    assert not (tmp_path / "h.mcap").exists()


def test_background_error_is_raised_on_next_call_and_close(tmp_path: Path) -> None:
    w = TickLogWriter(tmp_path / "err.mcap", header())
    w.write_tick(0, obs_for(0, 6), act_for(0, 6))
    w.write_beliefs(0, [np.zeros(3)], {"bad": object()})  # fails on the writer thread
    w._thread.join(timeout=5)
    with pytest.raises(TickLogError, match="writer .* failed"):
        w.write_tick(1, obs_for(1, 6), act_for(1, 6))
    with pytest.raises(TickLogError, match="failed"):
        w.close()
    with TickLogReader(tmp_path / "err.mcap") as r:  # what was flushed is readable
        assert r.truncated


def test_argument_errors_and_queue_backpressure(tmp_path: Path) -> None:
    n = 20_000
    with TickLogWriter(tmp_path / "q.mcap", header(n), queue_size=1) as w:
        with pytest.raises(TickLogError, match="shape|2-D"):
            w.write_tick(0, np.zeros(n), np.zeros((n, 1)))
        obs = np.random.default_rng(0).integers(0, 1000, (n, 2))
        for t in range(40):
            w.write_tick(t, obs, obs[:, :1])
        with pytest.raises(TickLogError, match="greater than the previous"):
            w.write_tick(39, obs, obs[:, :1])
        w.close({"ok": True})
        waits = w.stats["queue_full_waits"]
    with pytest.raises(TickLogError, match="closed"):
        w.write_tick(50, obs, obs[:, :1])
    with TickLogReader(tmp_path / "q.mcap") as r:
        assert [t.tick for t in r.ticks()] == list(range(40))  # nothing dropped
        assert r.footer is not None and r.footer.queue_full_waits == waits


def test_with_block_exception_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "exc.mcap"
    with pytest.raises(RuntimeError), TickLogWriter(path, header()) as w:
        w.write_tick(0, obs_for(0, 6), act_for(0, 6))
        raise RuntimeError("boom")
    with TickLogReader(path) as r:
        assert r.footer is not None and r.footer.error == "RuntimeError: boom"
        assert r.last_tick == 0


def test_a_failover_mark_round_trips(tmp_path) -> None:  # noqa: ANN001
    from engine.ticklog.reader import TickLogReader  # noqa: PLC0415
    from engine.ticklog.schema import TickLogHeader  # noqa: PLC0415
    from engine.ticklog.writer import TickLogWriter  # noqa: PLC0415

    path = str(tmp_path / "marks.mcap")
    obs, actions = np.zeros((3, 2), dtype=np.int64), np.zeros((3, 1), dtype=np.int64)
    with TickLogWriter(path, TickLogHeader(n_agents=3)) as writer:
        writer.write_tick(0, obs, actions)
        writer.write_tick(1, obs, actions, failover="DeviceFault: injected")
    with TickLogReader(path) as reader:
        assert [r.failover for r in reader.ticks()] == [None, "DeviceFault: injected"]


def test_a_failed_header_leaves_a_file_that_was_there(tmp_path: Path) -> None:
    """Only a file the writer created is removed when its header cannot be written; paths
    that are not regular files (a device, a FIFO, a directory) are refused untouched."""
    existing = tmp_path / "kept.mcap"
    existing.write_bytes(b"an earlier log")
    with pytest.raises(TickLogError, match="header"):
        TickLogWriter(existing, header(config={"x": object()}), overwrite=True)
    assert existing.exists()
    link = tmp_path / "link.mcap"
    link.symlink_to(existing)
    with pytest.raises(TickLogError, match="header"):
        TickLogWriter(link, header(config={"x": object()}), overwrite=True)
    assert link.is_symlink() and existing.exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path(os.devnull), tmp_path):
        with pytest.raises(TickLogError, match="not a regular file"):
            TickLogWriter(target, header())
    assert fifo.exists() and Path(os.devnull).exists()


def test_header_fields_are_checked_on_reading(tmp_path: Path) -> None:
    for fields, message in (({"n_agents": -1}, "n_agents must be a whole number"),
                            ({"hz": 0.0}, "hz must be a number > 0"),
                            ({"workers": True}, "workers must be a whole number"),
                            ({"extra": [1]}, "extra must be a JSON object")):
        path = tmp_path / f"h-{message.split()[0]}.mcap"
        TickLogWriter(path, header(**fields)).close()
        with pytest.raises(TickLogError, match=message):
            TickLogReader(path)


def test_chunk_cache_is_bounded_in_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    from engine.ticklog import reader as reader_module

    monkeypatch.setattr(reader_module, "_CACHED_BYTES", 4096)
    write_log(tmp_path / "t.mcap", 40, n=40, chunk_size=2048)
    with TickLogReader(tmp_path / "t.mcap") as r:
        assert [rec.tick for rec in r.ticks()] == list(range(40))
        assert sum(r._cached_bytes[k] for k in r._cache) <= 4096 or len(r._cache) == 1


def test_chunks_that_declare_too_much_are_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.ticklog import scan

    write_log(tmp_path / "t.mcap", 3)
    monkeypatch.setattr(scan, "MAX_CHUNK_BYTES", 100)
    with pytest.raises(TickLogError, match="chunk declares [\\d,]+ bytes uncompressed, more "
                                           "than a tick log chunk may hold \\(100\\)"):
        TickLogReader(tmp_path / "t.mcap")
    monkeypatch.setattr(scan, "MAX_CHUNK_BYTES", 1 << 30)
    monkeypatch.setattr(scan, "CHUNK_FLOOR_BYTES", 100)
    monkeypatch.setattr(scan, "MAX_CHUNK_RATIO", 1)
    with pytest.raises(TickLogError, match="past 100 bytes at most 1:1 is read"):
        TickLogReader(tmp_path / "t.mcap")


def test_a_header_too_large_to_read_back_is_not_written(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.ticklog import writer as writer_module

    monkeypatch.setattr(writer_module, "MAX_HEADER_BYTES", 200)
    with pytest.raises(TickLogError, match=r"the header is [\d,]+ bytes \(its model, mostly\), "
                                           r"more than a tick log carries \(200\)"):
        TickLogWriter(tmp_path / "h.mcap", header())
    assert not (tmp_path / "h.mcap").exists()


def test_an_existing_log_is_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "old.mcap"
    path.write_bytes(b"an earlier log")
    with pytest.raises(TickLogError, match=r"old.mcap' already exists \(overwrite=True"):
        TickLogWriter(path, header())
    assert path.read_bytes() == b"an earlier log"          # untouched
    link = tmp_path / "dangling.mcap"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(TickLogError, match="dangling.mcap"):
        TickLogWriter(link, header())
    assert not (tmp_path / "nowhere").exists()
    with TickLogWriter(path, header(), overwrite=True) as w:
        w.write_tick(0, obs_for(0, 6), act_for(0, 6))
    with TickLogReader(path) as r:
        assert [t.tick for t in r.ticks()] == [0]


def test_a_second_writer_on_the_same_path_fails_at_once(tmp_path: Path) -> None:
    """The first writer's lock refuses a second one, with overwrite or not, in one line;
    the first's file stays valid, and readable while it is being written."""
    path = tmp_path / "shared.mcap"
    first = TickLogWriter(path, header(), flush_every_s=0.05)
    first.write_tick(0, obs_for(0, 6), act_for(0, 6))
    for overwrite in (False, True):
        with pytest.raises(TickLogError) as caught:
            TickLogWriter(path, header(), overwrite=overwrite)
        message = str(caught.value)
        assert message == f"tick log {str(path)!r} is in use by another writer"
    assert log_in_use(path)
    deadline = time.monotonic() + 5
    while True:                                  # readers take no lock
        try:
            with TickLogReader(path) as r:
                if [t.tick for t in r.ticks()] == [0]:
                    break
        except TickLogError:
            pass
        assert time.monotonic() < deadline, "the first writer's tick never became readable"
        time.sleep(0.02)
    first.write_tick(1, obs_for(1, 6), act_for(1, 6))
    first.close({"ticks": 2})
    assert not log_in_use(path) and first.still_at_path()
    with TickLogReader(path) as r:
        assert [t.tick for t in r.ticks()] == [0, 1] and r.footer is not None
    with TickLogWriter(path, header(), overwrite=True):  # the lock went with the writer
        pass


def test_a_log_removed_or_replaced_while_written_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "gone.mcap"
    with TickLogWriter(path, header()) as w:
        assert w.still_at_path()
        w.write_tick(0, obs_for(0, 6), act_for(0, 6))
        path.unlink()
        assert not w.still_at_path()
    assert not w.still_at_path()
    with TickLogWriter(path, header()) as w:
        path.unlink()
        path.write_bytes(b"someone else's file")
    assert not w.still_at_path()
    assert path.read_bytes() == b"someone else's file"
