"""Tick log inspection (tools/inspect/): summary numbers, plot, JSON, diff, bad files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.ticklog.schema import TickLogHeader
from engine.ticklog.writer import TickLogWriter
from tools.args import OneLineParser
from tools.inspect.command import main_diff, main_inspect, register
from tools.inspect.diff import first_difference
from tools.inspect.scan import scan_ticks
from tools.inspect.summary import summarize

N, TICKS, SIZE, HZ = 20, 300, 10, 10.0
SKIPPED = (50, 51, 52)  # a gap in the tick numbers
SNAPSHOT_TICKS = (0, 100, 200)


def parse(*argv: str) -> argparse.Namespace:
    parser = OneLineParser(prog="agentloop")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    register(sub)
    return parser.parse_args(argv)


def level_of(t: int) -> int:
    if 120 <= t <= 149 or t == 250:
        return 1
    if 200 <= t <= 219:
        return 3
    return 0


def stale_of(t: int) -> list[int]:
    if level_of(t) == 3:
        return list(range(0, N, 2))
    return [5] if t == 250 else []


def obs_of(t: int) -> np.ndarray:
    cells = (np.arange(N) * 7 + t) % (SIZE * SIZE)
    return np.stack([cells, np.full(N, t % 3)], axis=1).astype(np.int64)


def act_of(t: int) -> np.ndarray:
    return np.stack([(np.arange(N) + t) % 5, np.arange(N) % 2], axis=1).astype(np.int64)


def written() -> list[int]:
    return [t for t in range(TICKS) if t not in SKIPPED]


Alter = Callable[[int, dict[str, Any]], None]


def write_log(path: Path, alter: Alter | None = None, *, skip: tuple[int, ...] = SKIPPED,
              chunk_size: int = 1 << 20, wall_offset: float = 0.0, **header: Any) -> Path:
    """The test log: ticks 0..299 but 50-52, levels 1 at 120-149 and 250, level 3 at
    200-219 (every other agent stale), agent 5 stale at 250, snapshots at 0, 100, 200."""
    base: dict[str, Any] = dict(n_agents=N, hz=HZ, seed=3, workers=2, model_hash="feedbeef",
                                config={"policy_len": 1, "gamma": 16.0},
                                world={"name": "grid", "size": SIZE, "n_agents": N})
    base.update(header)
    with TickLogWriter(path, TickLogHeader(**base), chunk_size=chunk_size) as w:
        for t in range(TICKS):
            if t in skip:
                continue
            rec = {"obs": obs_of(t), "act": act_of(t), "level": level_of(t),
                   "stale": stale_of(t)}
            if alter is not None:
                alter(t, rec)
            w.write_tick(t, rec["obs"], rec["act"], wall_time=1000.0 + wall_offset + t / HZ,
                         duration_s=(t % 150) / 1000 + wall_offset, level=rec["level"],
                         stale_agents=rec["stale"], timings={"step": 0.002 + wall_offset})
            if t in SNAPSHOT_TICKS:
                w.write_beliefs(t, [np.full((N, SIZE * SIZE), 0.01, np.float32)])
    return path


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("inspect") / "run.mcap")


def test_summary_numbers(log: Path) -> None:
    s = summarize(log)
    ticks = written()
    assert s["agents"] == N and s["hz"] == HZ and s["budget_s"] == pytest.approx(0.1)
    assert s["seed"] == 3 and s["workers"] == 2 and s["model_hash"] == "feedbeef"
    assert s["world"] == {"name": "grid", "size": SIZE, "n_agents": N}
    assert isinstance(s["engine_version"], str) and s["format_version"] == 1
    assert not s["truncated"] and s["has_footer"] and s["footer"]["ticks_written"] == 297
    assert s["ticks"] == {"count": 297, "first": 0, "last": 299, "missing": 3, "gap_runs": 1,
                          "gaps": [[50, 52]], "wall_s": pytest.approx(29.9),
                          "rate_hz": pytest.approx(296 / 29.9)}
    assert s["shape"] == {"modalities": [2], "factors": [2], "ticks_with_other_agent_count": 0}
    durations = np.array([(t % 150) / 1000 for t in ticks])
    p50, p90, p99 = np.percentile(durations, [50, 90, 99])
    tt = s["tick_time"]
    assert (tt["p50_s"], tt["p90_s"], tt["p99_s"]) == (p50, p90, p99)
    assert tt["max_s"] == 0.149 and tt["mean_s"] == pytest.approx(durations.mean())
    over = sum(1 for t in ticks if t % 150 > 100)
    assert tt["over_budget"] == over == 98 and tt["over_budget_fraction"] == over / 297
    assert s["levels"]["counts"] == {0: 297 - 51, 1: 31, 3: 20}
    assert s["levels"]["runs"] == [{"level": 1, "first": 120, "last": 149, "ticks": 30},
                                   {"level": 3, "first": 200, "last": 219, "ticks": 20},
                                   {"level": 1, "first": 250, "last": 250, "ticks": 1}]
    assert s["levels"]["run_count"] == 3
    # written without reasons, as logs were before issue 18: every stale agent-tick is
    # unrecorded
    assert s["stale"] == {"total": 20 * 10 + 1, "max": 10, "max_tick": 200,
                          "ticks_with_stale": 21, "unrecorded": 20 * 10 + 1,
                          "by_reason": {"deadline": 0, "worker": 0, "degraded": 0,
                                        "forced": 0}}
    acts = np.concatenate([act_of(t) for t in ticks])
    for f in range(2):
        assert s["actions"][f] == {"factor": f, "counts": np.bincount(acts[:, f]).tolist(),
                                   "out_of_range": 0}
    assert s["timings_mean_s"] == {"step": pytest.approx(0.002)}
    assert s["snapshots"] == 3


def test_printed_summary_and_json(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_inspect(parse("inspect", str(log))) == 0
    out = capsys.readouterr().out
    assert "complete (footer written)" in out
    assert "297: 0..299, 3 missing in 1 gap (ticks 50-52)" in out
    assert "98 over budget (33.0%)" in out
    assert "ticks 120-149 at level 1" in out and "ticks 200-219 at level 3" in out
    assert "tick 250 at level 1" in out
    assert "201 agent-ticks in 21 ticks; at most 10 in one tick (tick 200)" in out
    assert "factor 0: 0: " in out and "factor 1: 0: 2,970 (50.0%), 1: 2,970 (50.0%)" in out
    assert "snapshots  3" in out
    assert main_inspect(parse("inspect", "--json", str(log))) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ticks"]["count"] == 297 and data["levels"]["counts"] == {"0": 246, "1": 31,
                                                                          "3": 20}


def test_plot_is_png(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.png"
    assert main_inspect(parse("inspect", str(log), "--plot", str(out), "--json")) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(capsys.readouterr().out)["plot"] == str(out)
    other = write_log(tmp_path / "foreign_world.mcap", world={"name": "pettingzoo"})
    out2 = tmp_path / "no_heatmap.png"  # not a grid world: time series only
    assert main_inspect(parse("inspect", str(other), "--plot", str(out2))) == 0
    assert out2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _KeepFigure:
    """pyplot, but the figure ``draw`` makes is kept open for the test to look at."""

    def __init__(self) -> None:
        from tools.inspect.plot import import_pyplot

        self.plt = import_pyplot()
        self.figures: list[Any] = []

    def figure(self, *args: Any, **kwargs: Any) -> Any:
        self.figures.append(self.plt.figure(*args, **kwargs))
        return self.figures[-1]

    def close(self, fig: Any) -> None:
        pass


@pytest.mark.parametrize(("world", "axes"), [("grid", 6), ("pettingzoo", 4)])
def test_plot_draws_tick_time_distribution_levels_and_actions(
        log: Path, tmp_path: Path, world: str, axes: int) -> None:
    """Tick time over ticks, its distribution, the level and the actions' shares; for grid
    worlds the occupancy heatmap and its colour bar too."""
    from engine.ticklog.logset import open_log
    from tools.inspect.plot import draw
    from tools.inspect.summary import summary_of

    path = log if world == "grid" else write_log(tmp_path / "other.mcap",
                                                 world={"name": world})
    with open_log(path) as reader:
        scan = scan_ticks(reader, occupancy=True)
        summary = summary_of(reader, scan)
    keep = _KeepFigure()
    out = tmp_path / f"{world}.png"
    try:
        draw(keep, str(out), summary, scan)
        fig = keep.figures[0]
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(fig.axes) == axes
        titles = {ax.get_title() for ax in fig.axes}
        assert "tick-time distribution" in titles
        dist = next(ax for ax in fig.axes if ax.get_title() == "tick-time distribution")
        assert sum(p.get_height() for p in dist.patches) == 297          # every tick
        assert any("budget 100 ms" in line.get_label() for line in dist.get_lines())
        actions = next(ax for ax in fig.axes if ax.get_title().startswith("actions"))
        labels = actions.get_legend_handles_labels()[1]
        assert labels == (["stay", "up", "down", "left", "right"] if world == "grid"
                          else [f"action {a}" for a in range(5)])
        assert any(ax.get_ylabel() == "degradation level" for ax in fig.axes)
    finally:
        for fig in keep.figures:
            keep.plt.close(fig)


def test_action_timeline_merges_bins_and_keeps_shares() -> None:
    from tools.inspect.scan import TIMELINE_BINS, ActionTimeline

    timeline = ActionTimeline()
    for t in range(5, 5 + 3 * TIMELINE_BINS):
        if 100 <= t < 400:
            continue                                        # a gap: no bins there
        timeline.add(t, np.array([0, 0, 1, 2 if t % 2 else 0]))
    starts, shares = timeline.shares()
    assert timeline.width == 4 and len(starts) <= TIMELINE_BINS
    assert starts[0] == 5 and not ((starts > 100) & (starts + 4 <= 400)).any()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    np.testing.assert_allclose(shares[1], [5 / 8, 1 / 4, 1 / 8])   # ticks 9-12


def test_occupancy_counts_observed_cells(log: Path) -> None:
    from engine.ticklog.reader import TickLogReader

    with TickLogReader(log) as reader:
        scan = scan_ticks(reader, occupancy=True)
    expected = np.bincount(np.concatenate([obs_of(t)[:, 0] for t in written()]),
                           minlength=SIZE * SIZE)
    np.testing.assert_array_equal(scan.occupancy, expected)


def test_plot_errors(log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "missing_dir" / "out.png"
    assert main_inspect(parse("inspect", str(log), "--plot", str(bad))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("agentloop inspect: error: --plot")
    assert main_inspect(parse("inspect", str(log), "--plot", str(tmp_path / "x.nope"))) == 2
    assert "unknown image format" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main_inspect(parse("inspect", str(log), "--plot", str(tmp_path / "o.png"))) == 2
    assert capsys.readouterr().err == ("agentloop inspect: error: agentloop inspect --plot "
                                       "needs matplotlib: pip install 'agentloop[plot]'\n")


def test_truncated_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = write_log(tmp_path / "full.mcap", chunk_size=4096)
    data = full.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[:len(data) * 6 // 10])
    s = summarize(cut)
    assert s["truncated"] and not s["has_footer"] and s["footer"] is None
    assert 0 < s["ticks"]["count"] < 297 and s["ticks"]["first"] == 0
    assert s["snapshots"] >= 1
    assert main_inspect(parse("inspect", str(cut))) == 0
    assert "TRUNCATED at byte" in capsys.readouterr().out
    # the cut log agrees with the full one as far as it goes; then B has ticks A lacks
    assert main_diff(parse("diff", str(cut), str(full))) == 1
    out = capsys.readouterr().out
    last = s["ticks"]["last"]
    assert out.startswith(f"logs differ at tick {last + 1}: it is missing from A\n"
                          f"A has ended, B has it")


def test_foreign_file(tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello, not a tick log\n")
    assert main_diff(parse("diff", str(log), str(foreign))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an agentloop tick log" in err
    assert err.startswith("agentloop diff: error:") and "Traceback" not in err
    assert main_inspect(parse("inspect", str(foreign))) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main_inspect(parse("inspect", str(tmp_path / "absent.mcap"))) == 2
    assert "cannot read tick log" in capsys.readouterr().err


def test_diff_identical(tmp_path: Path, log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # same content, other wall times, durations and timings: they agree
    other = write_log(tmp_path / "same.mcap", wall_offset=0.5)
    assert first_difference(log, other) is None
    assert main_diff(parse("diff", str(log), str(other))) == 0
    assert capsys.readouterr().out == "logs agree on 297 ticks\n"


def _set(key: str, tick: int, fn: Callable[[Any], Any]) -> Alter:
    def alter(t: int, rec: dict[str, Any]) -> None:
        if t == tick:
            rec[key] = fn(rec[key])
    return alter


def _poke(a: np.ndarray, agent: int, col: int, value: int) -> np.ndarray:
    a = a.copy()
    a[agent, col] = value
    return a


@pytest.mark.parametrize(("alter", "expected", "line"), [
    (_set("act", 123, lambda a: _poke(a, 7, 1, 4)),
     {"tick": 123, "field": "actions", "agent": 7, "a": [0, 1], "b": [0, 4]},
     "logs differ at tick 123: actions of agent 7: A [0, 1], B [0, 4]"),
    (_set("obs", 77, lambda o: _poke(o, 4, 1, 0)),
     {"tick": 77, "field": "observations", "agent": 4, "a": [5, 2], "b": [5, 0]},
     "logs differ at tick 77: observations of agent 4: A [5, 2], B [5, 0]"),
    (_set("level", 10, lambda lv: 2),
     {"tick": 10, "field": "level", "agent": None, "a": 0, "b": 2},
     "logs differ at tick 10: level: A 0, B 2"),
    (_set("stale", 205, lambda s: [*s, 1]),
     {"tick": 205, "field": "stale agents", "agent": 1, "a": False, "b": True},
     "logs differ at tick 205: stale agents: agent 1 is not stale in A, stale in B"),
    (_set("act", 30, lambda a: a[:-1]),
     {"tick": 30, "field": "agent count", "agent": None, "a": [N, 2], "b": [N - 1, 2]},
     "logs differ at tick 30: agent count: A [20, 2], B [19, 2]"),
])
def test_diff_names_tick_field_agent(tmp_path: Path, log: Path, alter: Alter,
                                     expected: dict[str, Any], line: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    if expected["field"] == "agent count":  # obs and actions must keep the same n
        def both(t: int, rec: dict[str, Any]) -> None:
            if t == 30:
                rec["obs"], rec["act"] = rec["obs"][:-1], rec["act"][:-1]
        alter = both
    other = write_log(tmp_path / "b.mcap", alter)
    assert first_difference(log, other) == expected
    assert main_diff(parse("diff", str(log), str(other))) == 1
    assert capsys.readouterr().out == line + "\n"


def test_diff_missing_tick_and_header(tmp_path: Path, log: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    other = write_log(tmp_path / "gap.mcap", skip=(*SKIPPED, 60))
    assert first_difference(log, other) == {"tick": 60, "field": "missing tick", "agent": None,
                                            "a": True, "b": False, "next_a": 60, "next_b": 61}
    assert main_diff(parse("diff", str(log), str(other))) == 1
    assert capsys.readouterr().out == ("logs differ at tick 60: it is missing from B\n"
                                       "A has it, B goes on at tick 61\n")
    seed = write_log(tmp_path / "seed.mcap", seed=4)
    assert first_difference(log, seed) == {"tick": None, "field": "header seed",
                                           "agent": None, "a": 3, "b": 4}
    config = write_log(tmp_path / "config.mcap", config={"policy_len": 2, "gamma": 16.0})
    diff = first_difference(log, config)
    assert diff is not None and diff["field"] == "header config.policy_len"
    assert main_diff(parse("diff", str(log), str(config))) == 1
    assert capsys.readouterr().out == ("logs differ in the header: config.policy_len is 1 in "
                                       "A, 2 in B\n")
    # header fields that do not decide the run are not compared
    assert first_difference(log, write_log(tmp_path / "w.mcap", workers=5)) is None


def test_help_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("inspect", "--help")
    assert exc.value.code == 0
    assert "--plot PATH" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        parse("diff", "only_one.mcap")
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
