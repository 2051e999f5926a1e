"""The start-up progress line: printed while a start takes long, not after it ends."""

from __future__ import annotations

import io
import time

from tools.progress import StartupProgress


def test_progress_lines_while_starting_and_none_after() -> None:
    out = io.StringIO()
    progress = StartupProgress(out, every_s=0.05).start()
    time.sleep(0.18)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 4, lines
    assert all(line.startswith("  still starting after ") for line in lines)
    time.sleep(0.1)
    assert out.getvalue().splitlines() == lines
    progress.stop()                                     # idempotent


def test_a_quick_start_prints_nothing() -> None:
    out = io.StringIO()
    StartupProgress(out, every_s=5.0).start().stop()
    assert out.getvalue() == ""
