"""Tick-log writer cost (issue 5): ``python -m perf.ticklog [--agents N] [--ticks T] [--hz H]``.

Writes T ticks of N agents at H Hz (observations ``(N, 2)``: a position 0..99 and a cue 0..2,
actions ``(N, 1)`` 0..4, drawn at random each tick: the worst case for compression) and prints:

* the caller-thread cost of ``write_tick`` (it only copies the arrays and queues them);
* the writer thread's busy time per tick (compact dtype + base64 + orjson + zstd + write +
  periodic flush), and the part of it that holds the GIL (encoding, measured apart);
* bytes on disk per tick, and how fast the reader reads the ticks back;
* one belief snapshot of ``(N, --states)`` uint16 codes (random: worst case): caller cost,
  writer-thread cost and the GIL-holding part of it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import orjson
import zstandard

from engine.ticklog.reader import TickLogReader
from engine.ticklog.schema import TickLogHeader, _compact, _encode_array, encode_snapshot
from engine.ticklog.writer import ZSTD_LEVEL, TickLogWriter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=100_000)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--states", type=int, default=100, help="belief snapshot width")
    args = ap.parse_args()
    n, ticks = args.agents, args.ticks
    rng = np.random.default_rng(0)
    frames = [(np.stack([rng.integers(0, 100, n), rng.integers(0, 3, n)], axis=1),
               rng.integers(0, 5, (n, 1))) for _ in range(min(ticks, 8))]

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "perf.mcap")
        w = TickLogWriter(path, TickLogHeader(n_agents=n, hz=args.hz))
        caller = []
        t_start = time.monotonic()
        for t in range(ticks):
            obs, act = frames[t % len(frames)]
            t0 = time.perf_counter()
            w.write_tick(t, obs, act, duration_s=0.05, timings={"step": 0.05})
            caller.append(time.perf_counter() - t0)
            time.sleep(max(0.0, t_start + (t + 1) / args.hz - time.monotonic()))
        w.close({"ticks": ticks})
        tick_stats = dict(w.stats)
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        with TickLogReader(path) as r:
            read = sum(1 for _ in r.ticks())
        read_s = time.perf_counter() - t0

        beliefs = [rng.integers(0, 65535, (n, args.states)).astype(np.uint16)]
        w = TickLogWriter(os.path.join(tmp, "snap.mcap"), TickLogHeader(n_agents=n))
        t0 = time.perf_counter()
        w.write_beliefs(0, beliefs, {"codec": "uint16"})
        snap_caller = time.perf_counter() - t0
        w.close()
        snap_bg = w.stats["background_s"]
        parts, part_enc = encode_snapshot({"tick": 0, "arrays": beliefs, "meta": {}}), []
        while True:
            t0 = time.perf_counter()
            doc = next(parts, None)
            if doc is None:
                break
            orjson.dumps(doc)
            part_enc.append(time.perf_counter() - t0)

    # the GIL-holding part (compact + base64 + orjson) and zstd alone, on this thread
    enc, comp = [], []
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    for obs, act in frames * 3:
        t0 = time.perf_counter()
        msg = orjson.dumps({"tick": 0, "observations": _encode_array(_compact(obs)),
                            "actions": _encode_array(_compact(act))})
        t1 = time.perf_counter()
        cctx.compress(msg)
        enc.append(t1 - t0)
        comp.append(time.perf_counter() - t1)

    us = 1e6 * np.array(caller)
    print(f"tick log, {n:,} agents, {ticks} ticks at {args.hz:g} Hz "
          f"(obs {frames[0][0].shape} int64, actions {frames[0][1].shape} int64)")
    print(f"  write_tick on the caller's thread: mean {us.mean():.0f} us, "
          f"p50 {np.median(us):.0f} us, p99 {np.percentile(us, 99):.0f} us")
    print(f"  writer thread busy per tick:       {1e3 * tick_stats['background_s'] / ticks:.2f} ms"
          f" (queue-full waits: {tick_stats['queue_full_waits']})")
    print(f"    of which encode (holds the GIL): {1e3 * np.median(enc):.2f} ms, "
          f"zstd level {ZSTD_LEVEL} (releases it): {1e3 * np.median(comp):.2f} ms")
    print(f"  on disk: {size / ticks / 1e3:.0f} kB per tick ({size / 1e6:.1f} MB in all); "
          f"read back {read} ticks at {read / read_s:.0f} ticks/s")
    print(f"  belief snapshot {beliefs[0].shape} uint16 ({beliefs[0].nbytes / 1e6:.0f} MB): "
          f"caller {1e3 * snap_caller:.1f} ms, writer thread {1e3 * snap_bg:.0f} ms "
          f"(encode, holding the GIL: {1e3 * sum(part_enc):.0f} ms in {len(part_enc)} parts "
          f"of at most {1e3 * max(part_enc):.1f} ms)")


if __name__ == "__main__":
    main()
