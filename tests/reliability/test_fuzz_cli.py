"""Fuzzing the command line: argument lists that must fail exit with code 2 and one line on
stderr, never a traceback (and never start a run).

Property tests (hypothesis, derandomized: the same examples on every run);
``--hypothesis-show-statistics`` shows how the examples split between the outcomes.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine.kernels.backends import cupy_available
from tests.reliability.fuzz_support import (
    FUZZ,
)
from tools import cli
from world.models import grid_model

#: argument text a shell can pass (no NUL, no lone surrogates), control characters included
junk_text = (st.sampled_from(["a\nb", "\n", "\r\n", "\t", " ", "\x1b[2K", "é", "日本",
                              "\u202e", "💥", "\x7f", "-", "--"])
             | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                       max_size=10))


def _bad_int(low: int) -> st.SearchStrategy[str]:
    """Text that ``int()`` refuses, or a whole number below ``low``."""
    def refused(text: str) -> bool:
        try:
            return int(text) < low
        except ValueError:
            return True
    return (st.integers(-10**30, low - 1).map(str)
            | st.sampled_from(["", "abc", "1.5", "1e3", "0x10", "--", "NaN", "½", "٣.٣",
                               "1 2", "+-1"])
            | junk_text).filter(refused)


def _bad_float() -> st.SearchStrategy[str]:
    """Text that is not a finite number above 0."""
    def refused(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return True
        return not (value > 0 and math.isfinite(value))
    return (st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "", "ten", "0x1",
                             "-0.0", "1e-400"])
            | st.floats(max_value=0).map(repr) | junk_text).filter(refused)


#: option -> strategy of a value it accepts (argparse-valid; never used alone: every
#: command line also gets a unit that must fail)
RUN_GOOD = {
    "--world": st.sampled_from(["grid", "foraging"]),
    "--size": st.integers(2, 40).map(str),
    "--agents": st.integers(1, 10**6).map(str),
    "--hz": st.sampled_from(["0.5", "10", "1e3"]),
    "--ticks": st.integers(1, 10**9).map(str),
    "--workers": st.integers(0, 4).map(str),
    "--backend": st.sampled_from(["numba", "auto"]),
    "--policy-len": st.integers(1, 3).map(str),
    "--seed": st.integers(0, 2**63 - 1).map(str),
    "--snapshot-every": st.integers(0, 10**6).map(str),
    "--metrics-port": st.sampled_from(["0", "9108", "65535"]),
}


def _unknown_option() -> st.SearchStrategy[list[str]]:
    return st.sampled_from(["--xyzzy", "-q", "--agent-count", "--worlds", "---agents",
                            "-x"]).map(lambda o: [o])


def _stray(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """A positional argument nobody takes (never option-like)."""
    return text.filter(lambda t: not t.startswith("-")).map(lambda t: [t])


@st.composite
def run_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    bad_units: dict[str, st.SearchStrategy[list[str]]] = {
        "--agents": _bad_int(1).map(lambda v: ["--agents", v]),
        "--size": _bad_int(2).map(lambda v: ["--size", v]),   # 1 parses, the run refuses it
        "--ticks": _bad_int(1).map(lambda v: ["--ticks", v]),
        "--policy-len": _bad_int(1).map(lambda v: ["--policy-len", v]),
        "--workers": _bad_int(0).map(lambda v: ["--workers", v]),
        "--snapshot-every": _bad_int(0).map(lambda v: ["--snapshot-every", v]),
        "--metrics-port": (_bad_int(0) | st.integers(65536, 10**30).map(str)).map(
            lambda v: ["--metrics-port", v]),
        "--seed": (st.sampled_from(["x", "1.0", "", "٣x"])
                   | st.integers(-10**30, -1).map(str)
                   | st.integers(2**63, 10**30).map(str)).map(lambda v: ["--seed", v]),
        "oversized": st.sampled_from([["--hz", "100000"], ["--policy-len", "12"],
                                      ["--policy-len", "50"], ["--agents", "2000000000"],
                                      ["--size", "1000"], ["--duration", "1e300"]]),
        "--hz": _bad_float().map(lambda v: ["--hz", v]),
        "--duration": _bad_float().map(lambda v: ["--duration", v]),
        "--world": junk_text.filter(lambda w: w not in ("grid", "foraging")).map(
            lambda w: [f"--world={w}"]),
        "--backend": st.sampled_from(["gpu", "", "NUMBA"] + ([] if cupy_available()[0]
                                                             else ["cupy"])).map(
            lambda b: ["--backend", b]),
        "--log": st.sampled_from([str(tmp), str(tmp / "no-such-dir" / "run.mcap")]).map(
            lambda p: ["--log", p]),
        "unknown": _unknown_option(),
        "stray": _stray(junk_text),
        "missing": st.sampled_from(["--agents", "--hz", "--log", "--world"]).map(
            lambda o: [o]),
        "exclusive": st.just(["--ticks", "5", "--duration", "1"]),
    }
    bad_key = draw(st.sampled_from(sorted(bad_units)))
    bad = draw(bad_units[bad_key])
    taken = {bad_key, "--ticks", bad[0]}     # a filler repeating the option would override it
    if draw(st.booleans()) and len(bad) == 2 and bad[0].startswith("--"):
        bad = [f"{bad[0]}={bad[1]}"]
    fillers = draw(st.lists(st.sampled_from(sorted(set(RUN_GOOD) - taken)),
                            unique=True, max_size=4))
    units = [[opt, draw(RUN_GOOD[opt])] for opt in fillers]
    if bad_key == "missing":            # an option without its value: only at the end
        return ["run", *(t for u in units for t in u), *bad]
    units.insert(draw(st.integers(0, len(units))), bad)
    return ["run", *(t for u in units for t in u)]


#: ``serve`` options -> a value each accepts (fillers beside the unit that must fail)
SERVE_GOOD = {
    "--name": st.sampled_from(["main", "sim_1", "A" * 64]),
    "--world": st.sampled_from(["grid", "foraging"]),
    "--size": st.integers(2, 40).map(str),
    "--agents": st.integers(1, 10**6).map(str),
    "--workers": st.integers(0, 4).map(str),
    "--policy-len": st.integers(1, 3).map(str),
    "--semantics": st.sampled_from(["pymdp0", "pymdp1"]),
    "--seed": st.integers(0, 2**63 - 1).map(str),
    "--hz": st.sampled_from(["0.5", "10", "1e3"]),
    "--attach-timeout": st.sampled_from(["0.5", "30"]),
    "--client-timeout": st.sampled_from(["0.5", "30"]),
}


@st.composite
def serve_argv(draw: st.DrawFn) -> list[str]:
    """``agentloop serve`` command lines that must fail before any engine starts."""
    bad_units: dict[str, st.SearchStrategy[list[str]]] = {
        "--name": (st.sampled_from(["", "a-b", "a/b", "x" * 65, "..", "a b"])
                   | junk_text.filter(lambda t: not (t.isascii() and t.replace("_", "")
                                                      .isalnum() and len(t) <= 64))
                   ).map(lambda v: [f"--name={v}"]),
        "--agents": _bad_int(1).map(lambda v: ["--agents", v]),
        "--workers": _bad_int(0).map(lambda v: ["--workers", v]),
        "--policy-len": (_bad_int(1) | st.sampled_from(["12", "50"])).map(
            lambda v: ["--policy-len", v]),
        "--size": _bad_int(2).map(lambda v: ["--size", v]),
        "--semantics": junk_text.filter(lambda t: t not in ("pymdp0", "pymdp1")).map(
            lambda v: [f"--semantics={v}"]),
        "--seed": (st.sampled_from(["x", "1.0", ""]) | st.integers(-10**30, -1).map(str)
                   ).map(lambda v: ["--seed", v]),
        "--hz": _bad_float().map(lambda v: ["--hz", v]),
        "--attach-timeout": _bad_float().map(lambda v: ["--attach-timeout", v]),
        "--client-timeout": _bad_float().map(lambda v: ["--client-timeout", v]),
        "--world": junk_text.filter(lambda w: w not in ("grid", "foraging")).map(
            lambda w: [f"--world={w}"]),
        "unknown": _unknown_option(),
        "stray": _stray(junk_text),
    }
    bad_key = draw(st.sampled_from(sorted(bad_units)))
    bad = draw(bad_units[bad_key])
    taken = {bad_key, bad[0].split("=")[0]}
    fillers = draw(st.lists(st.sampled_from(sorted(set(SERVE_GOOD) - taken)),
                            unique=True, max_size=4))
    units = [[opt, draw(SERVE_GOOD[opt])] for opt in fillers]
    units.insert(draw(st.integers(0, len(units))), bad)
    return ["serve", *(t for u in units for t in u)]


@st.composite
def log_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    """replay / inspect / diff / shm / top-level command lines that must fail."""
    missing = junk_text.map(lambda t: str(tmp / f"missing-{t}.mcap"))
    bad_file = st.sampled_from([str(tmp), str(tmp / "empty.mcap"), str(tmp / "junk.mcap"),
                                str(tmp / "model.npz")])
    log = missing | bad_file
    command = draw(st.sampled_from(["replay", "inspect", "diff", "shm", "top"]))
    if command == "top":
        return draw(st.sampled_from([[], ["--xyzzy"], ["runn"], ["", "run"], ["RUN"]])
                    | _stray(junk_text).filter(
                        lambda a: a[0] not in ("run", "replay", "inspect", "diff", "demo",
                                               "shm", "soak")))
    if command == "shm":
        return ["shm", *draw(st.sampled_from([[], ["lists"], ["clean", "now"], ["--all"],
                                              ["list", "--xyzzy"]]) | _stray(junk_text).filter(
            lambda a: a[0] not in ("list", "clean")))]
    if command == "diff":
        files = draw(st.lists(log, min_size=0, max_size=3))
        if len(files) == 2 and draw(st.booleans()):
            files[0] = str(tmp / "good.mcap")          # one good log, one bad
        return ["diff", *files, *draw(st.sampled_from([[], ["--json"]]))]
    units: list[list[str]] = [[draw(log)]]
    if command == "replay":
        extra = {"--from": _bad_int(0), "--threads": _bad_int(1)}
    else:
        extra = {"--plot": st.sampled_from([str(tmp / "x.unknownext"), str(tmp),
                                            str(tmp / "no-dir" / "x.png")])}
    for opt in draw(st.lists(st.sampled_from(sorted(extra)), unique=True, max_size=2)):
        units.append([opt, draw(extra[opt])])
    if draw(st.booleans()):
        units.append(draw(_unknown_option() | _stray(junk_text)))
        if draw(st.booleans()):
            units[0] = [str(tmp / "good.mcap")]         # must fail on the extra argument
    if draw(st.booleans()):
        units.append(units.pop(0))                      # the log last
    return [command, *(t for u in units for t in u)]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory, replayable_log: Path) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "empty.mcap").write_bytes(b"")
    (tmp / "junk.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 3)
    grid_model(2).save(tmp / "model.npz")
    (tmp / "good.mcap").write_bytes(replayable_log.read_bytes())
    return tmp


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _check_failure(argv: list[str], code: int, out: str, err: str) -> None:
    assert code == 2, f"{argv!r}: exit code {code}, stderr {err!r}"
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"{argv!r}: stderr {err!r}"
    assert out == "", f"{argv!r}: stdout {out!r}"


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_run_command_lines_that_must_fail(cli_files: Path, data: st.DataObject,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(run_argv(cli_files))
    _check_failure(argv, *_run_cli(argv, capsys))


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_log_command_lines_that_must_fail(cli_files: Path, data: st.DataObject,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(log_argv(cli_files))
    _check_failure(argv, *_run_cli(argv, capsys))


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_serve_command_lines_that_must_fail(data: st.DataObject,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = data.draw(serve_argv())
    _check_failure(argv, *_run_cli(argv, capsys))
