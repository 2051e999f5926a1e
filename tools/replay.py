"""``agentloop replay LOG``: re-run a tick log as fast as the machine allows and verify it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from engine.errors import AgentloopError, TickLogError
from engine.ticklog.replay import ReplayResult, replay

EXIT_OK, EXIT_DIVERGED, EXIT_BAD_LOG = 0, 1, 2
BAR_WIDTH = 30


class ProgressBar:
    """A progress bar on a terminal; a line every 10% otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.interactive = out.isatty()
        self.began = time.monotonic()
        self._next_redraw = 0.0
        self._next_decile = 1

    def __call__(self, done: int, total: int) -> None:
        total = max(total, 1)
        now = time.monotonic()
        rate = done / max(now - self.began, 1e-9)
        if self.interactive:
            if now < self._next_redraw and done < total:
                return
            self._next_redraw = now + 0.1
            filled = int(BAR_WIDTH * done / total)
            self.out.write(f"\r\x1b[2Kreplay |{'#' * filled}{'.' * (BAR_WIDTH - filled)}| "
                           f"{done}/{total} ticks  {rate:,.0f} ticks/s")
            self.out.flush()
        elif done * 10 >= self._next_decile * total:
            self._next_decile = done * 10 // total + 1
            self.out.write(f"replay {100 * done // total:3d}%  {done}/{total} ticks  "
                           f"{rate:,.0f} ticks/s\n")
            self.out.flush()

    def finish(self) -> None:
        if self.interactive:
            self.out.write("\n")
            self.out.flush()


def set_note(result: ReplayResult) -> str:
    """What replay of a rotated set skipped or could not find (empty for a whole log)."""
    note = ""
    gone = result.rotated_away
    if gone:
        what = gone[0] if len(gone) == 1 else f"{len(gone)} files, {gone[0]} .. {gone[-1]},"
        note += (f"; the set's first {what} rotated away: started at {result.files[0]}, from "
                 f"the snapshot it opens with")
    elif result.started_mid_run:
        note += f"; started at {result.files[0]}, a later file of its set"
    if result.missing_next:
        note += (f"; the set was cut off: {result.missing_next}, which its last file names "
                 f"as the next, is missing")
    return note


def main_replay(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """Replay ``args.log``; exit 0 when every action matched, 1 on divergence, 2 bad log.
    ``out`` and ``err`` default to the ``sys.stdout`` / ``sys.stderr`` of the call."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    bar = ProgressBar(err)
    try:
        result = replay(args.log, from_tick=args.from_tick, progress=bar, threads=args.threads)
    except (TickLogError, AgentloopError, OSError) as exc:
        bar.finish()
        message = " ".join(str(exc).split())  # one line, even if the path holds newlines
        print(f"agentloop replay: error: {message}", file=err)
        return EXIT_BAD_LOG
    bar.finish()
    start = (f" (from the snapshot at tick {result.started_from_snapshot})"
             if result.started_from_snapshot is not None else "")
    if result.divergence is not None:
        print(f"replay diverged after {result.ticks} matching ticks{start}", file=out)
        print(result.divergence.report(), file=out)
        return EXIT_DIVERGED
    span = ("" if result.first_tick is None
            else f", ticks {result.first_tick}-{result.last_tick}")
    note = "; the log was cut off (crash), replayed up to its last complete tick" \
        if result.truncated else ""
    if result.unverified:
        ticks = ", ".join(map(str, result.unverified))
        note += (f"; taken from the log, not recomputed: tick {ticks} (the device failed over "
                 f"to the CPU from a copy of its state the log does not hold)")
    note += set_note(result)
    rate = result.ticks / max(result.seconds, 1e-9)
    files = f" across {len(result.files)} files" if len(result.files) > 1 else ""
    print(f"replay ok: {result.ticks} ticks{span}{start}{files} reproduced every recorded "
          f"action in {result.seconds:.1f} s ({rate:,.0f} ticks/s){note}", file=out)
    return EXIT_OK
