"""``--log-max-bytes`` and ``--log-rotate`` on ``agentloop run`` and ``soak``: sizes with
suffixes, one-line errors for bad values, and a rotated log that ``replay`` and ``inspect`` read
as one."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
import pytest

from engine.ticklog.files import member_path
from engine.ticklog.schema import TickLogHeader
from engine.ticklog.writer import TickLogWriter
from tools.args import byte_size
from tools.cli import main
from tools.run import log_report

RUN = ["run", "--agents", "60", "--ticks", "50", "--hz", "200", "--snapshot-every", "10"]


@pytest.mark.parametrize("text,value", [("1", 1), ("4096", 4096), ("500M", 500 << 20),
                                        ("2G", 2 << 30), ("1.5g", 3 << 29), ("64KiB", 64 << 10),
                                        ("10MB", 10 << 20), ("3 T", 3 << 40), ("7b", 7)])
def test_sizes_take_binary_suffixes(text: str, value: int) -> None:
    assert byte_size(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "abc", "1X", "", "0.1", "1e3", "inf", "5iB",
                                  "9" * 30])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        byte_size(text)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one line ``agentloop argv`` prints on stderr, exiting 2 before anything runs."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (code, out, err)
    return err.strip()


@pytest.mark.parametrize("command", ["run", "soak"])
@pytest.mark.parametrize("args,message", [
    (["--log-max-bytes", "0"], "argument --log-max-bytes: must be from 1 byte to"),
    (["--log-max-bytes=-3M"], "argument --log-max-bytes: expected a size in bytes"),
    (["--log-max-bytes", "lots"], "argument --log-max-bytes: expected a size in bytes"),
    (["--log-rotate", "0"], "argument --log-rotate: must be at least 1, got 0"),
    (["--log-rotate", "-2"], "argument --log-rotate: must be at least 1, got -2"),
    (["--log-rotate", "few"], "argument --log-rotate: expected a whole number, got 'few'"),
    (["--log-max-bytes", "1M"], "--log-max-bytes needs --log"),
    (["--log", "LOG", "--log-rotate", "3"], "--log-rotate needs --log-max-bytes"),
])
def test_bad_rotation_options_are_one_line_errors(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, command: str,
                                                  args: list[str], message: str) -> None:
    args = [str(tmp_path / "x.mcap") if a == "LOG" else a for a in args]
    base = ["run", "--ticks", "5"] if command == "run" else ["soak", "--duration", "2",
                                                             "--sample-every", "1"]
    assert message in _error(capsys, base + args)
    assert not (tmp_path / "x.mcap").exists()


def test_a_later_file_of_an_earlier_set_needs_overwrite(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    log = str(tmp_path / "run.mcap")
    Path(member_path(log, 1)).write_bytes(b"an earlier set's")
    err = _error(capsys, [*RUN, "--log", log, "--log-max-bytes", "20K"])
    assert err == (f"agentloop run: error: --log {log}: {member_path(log, 1)} (a later file of "
                   f"a rotated log there) already exists; pass --overwrite to replace the set")


def test_a_rotated_run_replays_and_inspects_as_one_log(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    log = str(tmp_path / "run.mcap")
    assert main([*RUN, "--log", log, "--log-max-bytes", "16K", "--log-rotate", "3"]) == 0
    out = capsys.readouterr().out
    kept = [member_path(log, i) for i in range(100) if os.path.exists(member_path(log, i))]
    assert len(kept) == 3 and not os.path.exists(log)
    assert all(os.path.getsize(path) <= 16 << 10 for path in kept)
    assert (f"50 ticks in {int(kept[-1][-8:-5]) + 1} files: {kept[0]} .. {kept[-1]}, the "
            f"{int(kept[0][-8:-5])} oldest removed (--log-rotate); replay with: agentloop "
            f"replay {log})") in out
    assert main(["replay", log]) == 0
    out = capsys.readouterr().out
    assert "reproduced every recorded action" in out and "across 3 files" in out
    assert f"rotated away: started at {kept[0]}, from the snapshot it opens with" in out
    assert main(["inspect", log]) == 0
    out = capsys.readouterr().out
    assert f"3 of a rotated set: {kept[0]} .. {kept[-1]}" in out
    os.unlink(kept[1])
    assert main(["replay", log]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"agentloop replay: error: {log}: tick log set is missing "
                           f"{kept[1]} (between {kept[0]} and {kept[2]})")


def test_a_removed_file_of_a_set_is_reported_not_the_replay(tmp_path: Path) -> None:
    log = str(tmp_path / "gone.mcap")
    writer = TickLogWriter(log, TickLogHeader(n_agents=40), max_bytes=9000)
    rng = np.random.default_rng(1)
    removed = False
    for tick in range(100):
        writer.write_tick(tick, rng.integers(0, 99, (40, 2)), rng.integers(0, 4, (40, 1)))
        if writer.rotation_due():
            writer.rotate([np.zeros((40, 3))])
        if len(writer.files) >= 3 and not removed:
            os.unlink(writer.files[1])          # finished: noticed when the run ends
            removed = True
    writer.close()
    assert removed
    out, err = io.StringIO(), io.StringIO()
    assert not log_report(writer, out, err)
    assert out.getvalue() == ""
    assert err.getvalue() == (f"agentloop run: error: tick log {log}: {member_path(log, 1)} was "
                              f"removed or replaced during the run\n")
