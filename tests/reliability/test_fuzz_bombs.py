"""Hostile small files: every one is refused in one line (``ModelError`` / ``TickLogError`` in
the API, exit 2 on the command line, never a traceback nor exit 1, which replay uses for
"diverged"), and reading or refusing any of them peaks under 300 MB of RSS (measured in a child
process by ``ru_maxrss``)."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import tools.replay  # noqa: F401  (imported before any capture, as in a real process)
from engine import GenerativeModel
from engine.errors import AgentloopError, ModelError, TickLogError
from engine.runtime.shm import leftover_entries
from engine.ticklog.reader import TickLogReader
from engine.ticklog.replay import replay
from tests.reliability.bombs import (
    GiB,
    log_messages,
    nested,
    npz_bomb,
    with_header,
    with_tick_field,
    zstd_bomb_log,
)
from tools import cli

REPO = Path(__file__).resolve().parents[2]
MAX_RSS_MB = 300
MEASURE = ("import resource, subprocess, sys; child = subprocess.Popen(sys.argv[1:]); "
           "child.wait(); print(child.pid, child.returncode, "
           "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(*argv: str, timeout: float = 120) -> tuple[int, float, int]:
    """Exit code, peak RSS (MB) and pid of ``python *argv`` run in a fresh grandchild (its
    parent waits for nothing else, so RUSAGE_CHILDREN is that process's alone)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, *argv],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    pid, code, kib = done.stdout.split()[-3:]
    return int(code), int(kib) / 1024, int(pid)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory, replayable_log: Path) -> dict[str, Path]:
    """Every hostile file, by name (each 1 MB or less)."""
    tmp = tmp_path_factory.mktemp("bombs")
    files = {"zstd-declares-1000.mcap": zstd_bomb_log(2 * GiB, 1000),
             "zstd-declares-2GiB.mcap": zstd_bomb_log(2 * GiB, 2 * GiB),
             "model-inconsistent.npz": npz_bomb(GiB),
             "model-consistent.npz": npz_bomb(GiB // 2, consistent=True)}
    out = {}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        out[name] = tmp / name
    npz = base64.b64encode(files["model-inconsistent.npz"]).decode()
    out["log-model-bomb.mcap"] = with_header(replayable_log, tmp / "log-model-bomb.mcap",
                                             model_npz=npz, model_hash="")
    out["log-10M-agents.mcap"] = with_header(replayable_log, tmp / "log-10M-agents.mcap",
                                             n_agents=10_000_000)
    out["log-policy-len-9.mcap"] = with_header(replayable_log, tmp / "log-policy-len-9.mcap",
                                               config={"policy_len": 9})
    out["log-policy-len-9-1000.mcap"] = with_header(
        replayable_log, tmp / "log-policy-len-9-1000.mcap", config={"policy_len": 9},
        n_agents=1000)
    for path in out.values():
        assert path.stat().st_size <= 1 << 20, path
    return out


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, err


def _one_line_exit_2(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------ tick logs
@pytest.mark.parametrize("name", ["zstd-declares-1000.mcap", "zstd-declares-2GiB.mcap"])
def test_zstd_bomb_chunks_are_refused_before_inflating(bombs: dict[str, Path],
                                                       name: str) -> None:
    with pytest.raises(TickLogError, match="offset 29: chunk (decompresses to more|declares)"):
        TickLogReader(bombs[name])


@pytest.mark.parametrize("command", ["inspect", "replay"])
@pytest.mark.parametrize("name", ["zstd-declares-1000.mcap", "zstd-declares-2GiB.mcap",
                                  "log-model-bomb.mcap", "log-10M-agents.mcap",
                                  "log-policy-len-9.mcap", "log-policy-len-9-1000.mcap"])
def test_hostile_logs_are_refused_in_one_line_under_300_mb(bombs: dict[str, Path], name: str,
                                                           command: str) -> None:
    code, rss, pid = peak_rss("-m", "tools", command, str(bombs[name]))
    readable = command == "inspect" and name.startswith("log-")   # inspect builds no engine
    assert code == (0 if readable else 2)
    assert rss < MAX_RSS_MB, f"{name}: {command} peaked at {rss:.0f} MB"
    assert not [run for run in leftover_entries() if run.startswith(f"{pid}x")]


def test_header_asking_for_more_agents_than_its_ticks_hold(bombs: dict[str, Path]) -> None:
    with pytest.raises(TickLogError, match=r"header says 10,000,000 agents, tick 0 records "
                                           r"observations of 5"):
        replay(str(bombs["log-10M-agents.mcap"]))


@pytest.mark.parametrize(("name", "message"), [
    ("log-policy-len-9.mcap", "policy_len 9 gives 1,953,125 policies"),
    ("log-policy-len-9-1000.mcap", "1,953,125 policies|header says 1,000 agents"),
])
def test_header_asking_for_too_many_policies(bombs: dict[str, Path], name: str,
                                             message: str) -> None:
    with pytest.raises(AgentloopError, match=message):
        replay(str(bombs[name]))


def test_model_bomb_inside_a_log(bombs: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="A_0: declares shape"):
        replay(str(bombs["log-model-bomb.mcap"]))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("hz", "abc", "hz must be a number > 0 or null, got 'abc'"),
    ("n_agents", "many", "n_agents must be a whole number"),
    ("world", [1, 2], "world must be a JSON object, got list"),
    ("seed", 2**70, "seed must be a whole number in 0..9,223,372,036,854,775,807"),
    ("seed", 2**63, "seed must be a whole number in 0..9,223,372,036,854,775,807"),
    ("seed", -1, "seed must be a whole number"),
    ("workers", 2**70, "workers must be a whole number"),
    ("extra", {"chunk": 2**40}, "chunk must be in 1..1,048,576"),
    ("config", {"policy_len": 2**70}, "must be an int"),
])
@pytest.mark.parametrize("command", ["inspect", "replay", "diff"])
def test_hostile_header_fields_get_one_line(replayable_log: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], field: str,
                                            value: object, message: str, command: str) -> None:
    bad = with_header(replayable_log, tmp_path / "bad.mcap", **{field: value})
    argv = [command, str(bad)] + ([str(replayable_log)] if command == "diff" else [])
    if field in ("config", "extra") and command != "replay":
        pytest.skip("only replay interprets the config and extra fields")
    code, err = _cli(argv, capsys)
    _one_line_exit_2(code, err)
    assert message in err


@pytest.mark.parametrize("field", ["tick", "level"])
@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_hostile_tick_fields_get_one_line(replayable_log: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], field: str,
                                          command: str) -> None:
    bad = with_tick_field(replayable_log, tmp_path / "bad.mcap", **{field: 2**70})
    code, err = _cli([command, str(bad)], capsys)
    _one_line_exit_2(code, err)
    assert f"{field} must be a whole number in 0.." in err


@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_deeply_nested_world_gets_one_line(replayable_log: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           command: str) -> None:
    doc = json.loads(log_messages(replayable_log)[0][3])
    doc["world"] = "DEEP"
    raw = json.dumps(doc).encode().replace(b'"DEEP"', nested(1015))
    deep = with_header(replayable_log, tmp_path / "deep.mcap", raw=raw)
    code, err = _cli([command, "--json", str(deep)] if command == "inspect"
                     else [command, str(deep)], capsys)
    _one_line_exit_2(code, err)
    assert "world nests lists and objects more than 32 deep" in err


# --------------------------------------------------------------------------------- models
@pytest.mark.parametrize(("name", "message"), [
    ("model-inconsistent.npz", r"A_0: declares shape \(44739242, 3\); the model's other "
                               r"arrays make it \(44739242, 2\)"),
    ("model-consistent.npz", r"declares 1,073,741,8\d\d bytes of arrays \(as float64\) in a "
                             r"[\d,]+-byte file; at most [\d,]+ are read from it"),
])
def test_model_bombs_are_refused_from_their_headers(bombs: dict[str, Path], name: str,
                                                    message: str) -> None:
    with pytest.raises(ModelError, match=message):
        GenerativeModel.load(bombs[name])
    with pytest.raises(ModelError, match=message):
        GenerativeModel.from_npz_bytes(bombs[name].read_bytes(), "bytes")


@pytest.mark.parametrize("name", ["model-inconsistent.npz", "model-consistent.npz"])
def test_model_bombs_load_under_300_mb(bombs: dict[str, Path], name: str) -> None:
    code, rss, _ = peak_rss("-c", "import sys; from engine import GenerativeModel\n"
                               "try:\n    GenerativeModel.load(sys.argv[1])\n"
                               "except Exception as exc:\n    print(exc); sys.exit(2)",
                         str(bombs[name]))
    assert code == 2
    assert rss < MAX_RSS_MB, f"{name}: peaked at {rss:.0f} MB"


def test_rss_probe_sees_a_large_allocation() -> None:
    """The measurement itself: a child that touches 400 MB is seen above the limit."""
    code, rss, _ = peak_rss("-c", "b = bytearray(400 << 20)")
    assert code == 0 and rss > 400
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
