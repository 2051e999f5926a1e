"""Inspect and compare tick logs: ``agentloop inspect LOG`` and ``agentloop diff A B``.

:func:`summarize` streams a tick log (:mod:`engine.ticklog`) once and returns a JSON-ready dict:
the header (agents, rate, seed, model hash, world, engine version), whether the file is
complete (footer) or was cut off by a crash, the ticks (count, first and last, gaps), the tick
time distribution against the budget ``1/hz``, the degradation timeline (level counts and the
runs of ticks at each non-zero level), stale agents, a histogram of the actions of each control
factor and the number of belief snapshots. Ticks are read one at a time and reduced with
``np.bincount``, so memory does not grow with the number of agents times ticks: a few scalars
per tick (for the percentiles and the plot) plus one tick's arrays.

:func:`format_summary` prints that dict; :func:`write_plot` draws tick time and level over ticks
and, for grid worlds (world ``name`` ``grid`` or ``foraging`` with a ``size``), where the
agents were (observation modality 0 is the observed cell, row-major ``size x size``), summed
over ticks.

:func:`first_difference` streams two logs in step and names the first tick, field and agent
where they differ (header fields that decide the run, missing ticks, observations, level,
stale agents, actions); wall times, durations and timings are expected to differ and are
ignored, as are belief snapshots.

:func:`add_parsers` adds both subcommands to the ``agentloop`` command line, and
:func:`main_inspect` / :func:`main_diff` run them and return the exit code: 0 ok, 1 the logs
differ (diff only), 2 a bad or foreign file or a bad argument (one line on stderr, never a
traceback).

This module imports only the standard library at import time (numpy, the tick log reader and
matplotlib are imported when a command runs), so building the command line stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from array import array
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import TickLogError

if TYPE_CHECKING:
    import numpy as np

    from engine.ticklog.reader import TickLogReader
    from engine.ticklog.schema import TickRecord

__all__ = [
    "EXIT_DIFFER", "EXIT_OK", "EXIT_USAGE", "GRID_WORLDS", "PLOT_MISSING", "add_parsers",
    "first_difference", "format_difference", "format_summary", "main_diff", "main_inspect",
    "summarize", "write_plot",
]

EXIT_OK, EXIT_DIFFER, EXIT_USAGE = 0, 1, 2
PLOT_MISSING = "agentloop inspect --plot needs matplotlib: pip install 'agentloop[plot]'"
GRID_WORLDS = ("grid", "foraging")
"""World names whose observation modality 0 is the observed cell (row-major ``size x size``)."""
HEADER_FIELDS = ("n_agents", "seed", "model_hash", "config", "world")
"""Header fields that decide a run: logs that differ in them differ (checked by diff)."""
MAX_GAPS = 100
"""At most this many gaps (runs of missing tick numbers) are listed; all are counted."""
MAX_LEVEL_RUNS = 1000
"""At most this many runs of ticks at a non-zero level are listed; all are counted."""
MAX_ACTION = 1 << 16
"""Action values at or above this (or below 0) are counted as out of range, not binned."""
_PRINT_RUNS = 12
_PRINT_ACTIONS = 16


# ------------------------------------------------------------------------------------ scan
def _grid_size(world: Mapping[str, Any]) -> int | None:
    """The side of a grid world's square (its config's ``size``), or None for other worlds."""
    size = world.get("size")
    if world.get("name") in GRID_WORLDS and isinstance(size, int) and size > 0:
        return size
    return None


def _bincount(values: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Counts of each value in ``0..limit-1`` (trailing zeros trimmed) and how many values fell
    outside that range."""
    import numpy as np

    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi < limit:
        return np.bincount(values.astype(np.intp, copy=False)), 0
    inside = values[(values >= 0) & (values < limit)].astype(np.intp, copy=False)
    return np.bincount(inside), int(values.size - inside.size)


def _add_counts(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``total + counts`` where the two may differ in length (the longer length is kept)."""
    import numpy as np

    if counts.size > total.size:
        total = np.concatenate([total, np.zeros(counts.size - total.size, dtype=np.int64)])
    total[:counts.size] += counts
    return total


@dataclass
class _Scan:
    """What one pass over a log's ticks accumulates: per-tick scalars and running totals."""

    n_agents: int
    cells: int | None
    ticks: array = field(default_factory=lambda: array("q"))
    durations: array = field(default_factory=lambda: array("d"))
    levels: array = field(default_factory=lambda: array("q"))
    stale: array = field(default_factory=lambda: array("q"))
    wall_first: float | None = None
    wall_last: float | None = None
    gaps: list[list[int]] = field(default_factory=list)
    gap_runs: int = 0
    missing: int = 0
    level_counts: Counter[int] = field(default_factory=Counter)
    level_runs: list[dict[str, int]] = field(default_factory=list)
    level_run_count: int = 0
    run: list[int] | None = None  # [level, first tick, last tick] of the run in progress
    actions: list[Any] = field(default_factory=list)  # per factor: int64 counts
    actions_out_of_range: list[int] = field(default_factory=list)
    modalities: set[int] = field(default_factory=set)
    factors: set[int] = field(default_factory=set)
    other_agent_count: int = 0
    timing_sums: dict[str, float] = field(default_factory=dict)
    timing_counts: Counter[str] = field(default_factory=Counter)
    occupancy: Any = None  # int64 (cells,) when cells is not None
    off_grid: int = 0
    failovers: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rec: TickRecord) -> None:
        """Fold one tick in."""
        if self.ticks:
            gap = rec.tick - self.ticks[-1] - 1
            if gap > 0:
                self.gap_runs += 1
                self.missing += gap
                if len(self.gaps) < MAX_GAPS:
                    self.gaps.append([self.ticks[-1] + 1, rec.tick - 1])
                self._end_run()
        else:
            self.wall_first = rec.wall_time
        self.wall_last = rec.wall_time
        self.ticks.append(rec.tick)
        self.durations.append(rec.duration_s)
        self.levels.append(rec.level)
        self.stale.append(int(rec.stale_agents.size))
        if rec.failover is not None:
            self.failovers.append({"tick": rec.tick, "error": rec.failover})
        self.level_counts[rec.level] += 1
        if self.run is not None and self.run[0] != rec.level:
            self._end_run()
        if self.run is None:
            self.run = [rec.level, rec.tick, rec.tick]
        self.run[2] = rec.tick
        obs, act = rec.observations, rec.actions
        self.modalities.add(obs.shape[1])
        self.factors.add(act.shape[1])
        if obs.shape[0] != self.n_agents:
            self.other_agent_count += 1
        for f in range(act.shape[1]):
            counts, out = _bincount(act[:, f], MAX_ACTION)
            if f == len(self.actions):
                self.actions.append(counts.astype("int64"))
                self.actions_out_of_range.append(out)
            else:
                self.actions[f] = _add_counts(self.actions[f], counts)
                self.actions_out_of_range[f] += out
        for key, value in rec.timings.items():
            if math.isfinite(value):
                self.timing_sums[key] = self.timing_sums.get(key, 0.0) + value
                self.timing_counts[key] += 1
        if self.cells is not None and obs.shape[1] > 0:
            counts, out = _bincount(obs[:, 0], self.cells)
            self.occupancy[:counts.size] += counts
            self.off_grid += out

    def finish(self) -> None:
        """Close the level run in progress (call after the last tick)."""
        self._end_run()

    def _end_run(self) -> None:
        if self.run is None:
            return
        level, first, last = self.run
        self.run = None
        if level == 0:
            return
        self.level_run_count += 1
        if len(self.level_runs) < MAX_LEVEL_RUNS:
            self.level_runs.append({"level": level, "first": first, "last": last,
                                    "ticks": last - first + 1})


def _scan(reader: TickLogReader, occupancy: bool = False) -> _Scan:
    """One pass over every tick of ``reader`` (one tick's arrays in memory at a time)."""
    import numpy as np

    header = reader.header
    cells = None
    if occupancy:
        size = _grid_size(header.world)
        cells = None if size is None else size * size
    scan = _Scan(n_agents=header.n_agents, cells=cells)
    if cells is not None:
        scan.occupancy = np.zeros(cells, dtype=np.int64)
    for rec in reader.ticks():
        scan.add(rec)
    scan.finish()
    return scan


def _count_snapshots(reader: TickLogReader) -> int:
    """Belief snapshots in the log: the footer's count, or (no footer) those read back."""
    footer = reader.footer
    if footer is not None:
        return footer.snapshots_written
    return sum(1 for _ in reader.snapshots())


# --------------------------------------------------------------------------------- summary
def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarize the tick log at ``path`` in one streaming pass (JSON-ready dict).

    Keys: ``path``, ``file_bytes``, ``engine_version``, ``format_version``, ``truncated``,
    ``truncated_at``, ``has_footer``, ``footer``; header fields ``agents``, ``hz``,
    ``budget_s``, ``seed``, ``workers``, ``model_hash``, ``model_npz_bytes``, ``config``,
    ``world``, ``created_unix``; ``ticks`` (count, first, last, missing, gap_runs, gaps
    ``[[first missing, last missing], ...]``, wall_s, rate_hz); ``shape`` (modalities,
    factors, ticks whose agent count is not the header's); ``tick_time`` (p50/p90/p99/max/mean
    in seconds, over_budget count and fraction); ``levels`` (counts by level; runs of ticks at
    a non-zero level ``{"level", "first", "last", "ticks"}``; run_count); ``stale`` (total
    agent-ticks, max in one tick and that tick, ticks with any); ``actions`` (per factor: counts
    of each action index over all agents and ticks); ``timings_mean_s``; ``snapshots``;
    ``failovers`` (``{"tick", "error"}`` for each tick whose device failed over to the CPU).

    Raises :class:`engine.ticklog.TickLogError` for a file that is not a readable tick log.
    """
    from engine.ticklog.reader import TickLogReader

    with TickLogReader(path) as reader:
        scan = _scan(reader)
        return _summary(reader, scan)


def _summary(reader: TickLogReader, scan: _Scan) -> dict[str, Any]:
    import numpy as np

    h = reader.header
    footer = reader.footer
    budget = 1.0 / h.hz if h.hz else None
    n = len(scan.ticks)
    durations = np.frombuffer(scan.durations, dtype=np.float64) if n else np.zeros(0)
    tick_time: dict[str, Any] = {"p50_s": None, "p90_s": None, "p99_s": None, "max_s": None,
                                 "mean_s": None, "over_budget": None,
                                 "over_budget_fraction": None}
    if n:
        p50, p90, p99 = np.percentile(durations, [50, 90, 99])
        tick_time.update(p50_s=float(p50), p90_s=float(p90), p99_s=float(p99),
                         max_s=float(durations.max()), mean_s=float(durations.mean()))
        if budget is not None:
            over = int(np.count_nonzero(durations > budget))
            tick_time.update(over_budget=over, over_budget_fraction=over / n)
    stale = np.frombuffer(scan.stale, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    wall_s = (scan.wall_last - scan.wall_first) if n else None  # type: ignore[operator]
    return {
        "path": reader.path,
        "file_bytes": reader.size,
        "engine_version": h.engine_version,
        "format_version": h.format_version,
        "truncated": bool(reader.truncated),
        "truncated_at": reader.truncated_at,
        "has_footer": footer is not None,
        "footer": None if footer is None else {
            "ticks_written": footer.ticks_written, "snapshots_written": footer.snapshots_written,
            "queue_full_waits": footer.queue_full_waits, "error": footer.error,
            "totals": footer.totals},
        "agents": h.n_agents,
        "hz": h.hz,
        "budget_s": budget,
        "seed": h.seed,
        "workers": h.workers,
        "model_hash": h.model_hash,
        "model_npz_bytes": None if h.model_npz is None else len(h.model_npz),
        "config": h.config,
        "world": h.world,
        "extra": h.extra,
        "created_unix": h.created_unix,
        "ticks": {
            "count": n,
            "first": scan.ticks[0] if n else None,
            "last": scan.ticks[-1] if n else None,
            "missing": scan.missing,
            "gap_runs": scan.gap_runs,
            "gaps": scan.gaps,
            "wall_s": wall_s,
            "rate_hz": (n - 1) / wall_s if n > 1 and wall_s else None,
        },
        "shape": {"modalities": sorted(scan.modalities), "factors": sorted(scan.factors),
                  "ticks_with_other_agent_count": scan.other_agent_count},
        "tick_time": tick_time,
        "levels": {"counts": dict(sorted(scan.level_counts.items())),
                   "runs": scan.level_runs, "run_count": scan.level_run_count},
        "stale": {"total": int(stale.sum()), "max": int(stale.max()) if n else 0,
                  "max_tick": scan.ticks[int(stale.argmax())] if n and stale.max() > 0
                  else None,
                  "ticks_with_stale": int(np.count_nonzero(stale))},
        "actions": [{"factor": f, "counts": [int(c) for c in counts],
                     "out_of_range": scan.actions_out_of_range[f]}
                    for f, counts in enumerate(scan.actions)],
        "timings_mean_s": {k: scan.timing_sums[k] / scan.timing_counts[k]
                           for k in sorted(scan.timing_sums)},
        "snapshots": _count_snapshots(reader),
        "failovers": scan.failovers,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    exponent = min(int(math.log10(n)) // 3, 3)
    return f"{n / 1000 ** exponent:.1f} {('kB', 'MB', 'GB')[exponent - 1]}"


def _level_name(level: int) -> str:
    from engine.runtime.degrade import LEVEL_NAMES

    return LEVEL_NAMES[level] if 0 <= level < len(LEVEL_NAMES) else "unknown level"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _span(first: int, last: int) -> str:
    return f"tick {first}" if first == last else f"ticks {first}-{last}"


def format_summary(s: Mapping[str, Any]) -> str:
    """The summary of :func:`summarize` as aligned text lines (what ``agentloop inspect``
    prints)."""
    lines: list[str] = []

    def put(label: str, text: str) -> None:
        lines.append(f"{label:<11}{text}")

    if s["has_footer"]:
        state = "complete (footer written"
        footer = s["footer"]
        if footer["error"]:
            state += f"; the run ended with an error: {footer['error']}"
        state += ")"
    else:
        state = (f"TRUNCATED at byte {s['truncated_at']} (no footer: the writer did not "
                 f"finish; ticks up to the last complete chunk are read)")
    put("log", f"{s['path']} ({_bytes(s['file_bytes'])}), {state}")
    put("engine", f"agentloop {s['engine_version']}, tick log format {s['format_version']}")
    shape = s["shape"]
    mods = "/".join(map(str, shape["modalities"])) or "?"
    facs = "/".join(map(str, shape["factors"])) or "?"
    agents = (f"{s['agents']:,} ({mods} observation modalit{'y' if mods == '1' else 'ies'}, "
              f"{facs} control factor{'' if facs == '1' else 's'})")
    if shape["ticks_with_other_agent_count"]:
        agents += f"; {shape['ticks_with_other_agent_count']} ticks have another agent count"
    put("agents", agents)
    if s["hz"]:
        put("rate", f"{s['hz']:g} Hz (tick budget {_ms(s['budget_s'])})")
    else:
        put("rate", "not recorded (no tick budget)")
    world = s["world"]
    if world:
        text = str(world.get("name", "?"))
        if "size" in world:
            text += f", size {world['size']}"
        rest = len([k for k in world if k not in ("name", "size")])
        if rest:
            text += f" (+{rest} more settings, see --json)"
        put("world", text)
    else:
        put("world", "not recorded")
    model = s["model_hash"] or "?"
    backend = s["extra"].get("backend") if isinstance(s["extra"], dict) else None
    on = f", on {backend}" if backend and backend != "numba" else ""
    if on and s["extra"].get("xp_kernel"):
        on += f" ({s['extra']['xp_kernel']} kernel)"
    put("run", f"seed {s['seed']}, {s['workers']} workers{on}, model {model[:16]}")
    t = s["ticks"]
    if t["count"]:
        text = f"{t['count']:,}: {t['first']}..{t['last']}, "
        if t["gap_runs"]:
            shown = ", ".join(_span(a, b) for a, b in t["gaps"][:_PRINT_RUNS])
            more = t["gap_runs"] - min(len(t["gaps"]), _PRINT_RUNS)
            text += (f"{t['missing']:,} missing in {_plural(t['gap_runs'], 'gap')} ({shown}"
                     f"{f', +{more} more' if more else ''})")
        else:
            text += "no gaps"
        if t["wall_s"] is not None:
            text += f"; {t['wall_s']:.1f} s of wall time"
            if t["rate_hz"]:
                text += f" ({t['rate_hz']:.1f} ticks/s)"
        put("ticks", text)
    else:
        put("ticks", "none")
    tt = s["tick_time"]
    if t["count"]:
        text = (f"p50 {_ms(tt['p50_s'])}, p90 {_ms(tt['p90_s'])}, p99 {_ms(tt['p99_s'])}, "
                f"max {_ms(tt['max_s'])}")
        if tt["over_budget"] is not None:
            text += (f"; {tt['over_budget']:,} over budget "
                     f"({100 * tt['over_budget_fraction']:.1f}%)")
        put("tick time", text)
    lv = s["levels"]
    if lv["counts"]:
        put("levels", ", ".join(f"{k} ({_level_name(int(k))}): {v:,}"
                                for k, v in lv["counts"].items()))
        for run in lv["runs"][:_PRINT_RUNS]:
            put("", f"{_span(run['first'], run['last'])} at level {run['level']}")
        more = lv["run_count"] - min(len(lv["runs"]), _PRINT_RUNS)
        if more:
            put("", f"... {more} more runs at non-zero levels (see --json)")
    st = s["stale"]
    if st["total"]:
        put("stale", f"{st['total']:,} agent-ticks in {_plural(st['ticks_with_stale'], 'tick')};"
                     f" at most {st['max']:,} in one tick (tick {st['max_tick']})")
    elif t["count"]:
        put("stale", "none")
    for entry in s["actions"]:
        counts = entry["counts"]
        total = sum(counts) or 1
        shown = [f"{a}: {c:,} ({100 * c / total:.1f}%)" for a, c in enumerate(counts)]
        text = ", ".join(shown[:_PRINT_ACTIONS])
        if len(shown) > _PRINT_ACTIONS:
            text += f", ... ({len(shown) - _PRINT_ACTIONS} more)"
        if entry["out_of_range"]:
            text += f"; {entry['out_of_range']:,} out of range"
        put("actions" if entry["factor"] == 0 else "", f"factor {entry['factor']}: {text}")
    put("snapshots", str(s["snapshots"]))
    for event in s["failovers"]:
        put("failover", f"tick {event['tick']}: the device failed ({event['error']}); the run "
                        f"went on on the CPU")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ plot
def _import_pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; ImportError (with :data:`PLOT_MISSING`) if
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(PLOT_MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_plot_path(path: str) -> str | None:
    """Why ``path`` cannot take the plot (one line), or None when it can."""
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1].lstrip(".").lower()
    supported = FigureCanvasBase.get_supported_filetypes()
    if ext not in supported:
        return (f"--plot {path!r}: unknown image format {ext!r}; use one of "
                f"{', '.join(sorted(supported))} (e.g. out.png)")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--plot {path!r} is a directory"
    if not os.path.isdir(folder):
        return f"--plot {path!r}: the directory {folder!r} does not exist"
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--plot {path!r}: not writable"
    return None


def write_plot(path: str | os.PathLike[str], log: str | os.PathLike[str]) -> dict[str, Any]:
    """Summarize ``log`` and draw it into ``path`` (format from the file's extension); returns
    the summary. See :func:`_draw` for the panels. Raises ImportError (:data:`PLOT_MISSING`)
    without matplotlib, ``TickLogError`` for a bad log, OSError when ``path`` cannot be
    written."""
    from engine.ticklog.reader import TickLogReader

    plt = _import_pyplot()
    with TickLogReader(log) as reader:
        scan = _scan(reader, occupancy=True)
        summary = _summary(reader, scan)
    _draw(plt, os.fspath(path), summary, scan)
    return summary


def _draw(plt: Any, path: str, summary: Mapping[str, Any], scan: _Scan) -> None:
    """Tick time (ms) over ticks with the budget line, level over ticks and, for grid worlds,
    the occupancy heatmap (observed cell counts summed over ticks)."""
    import numpy as np

    ticks = np.frombuffer(scan.ticks, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    durations = np.frombuffer(scan.durations, dtype=np.float64) if scan.ticks else np.zeros(0)
    levels = np.frombuffer(scan.levels, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    size = _grid_size(summary["world"])
    heat = scan.occupancy is not None and size is not None
    fig = plt.figure(figsize=(13 if heat else 9, 6), layout="constrained")
    grid = fig.add_gridspec(2, 2 if heat else 1, width_ratios=[1.6, 1] if heat else None)
    ax_t = fig.add_subplot(grid[0, 0])
    ax_l = fig.add_subplot(grid[1, 0], sharex=ax_t)
    name = os.path.basename(summary["path"])
    title = f"{name}: {summary['agents']} agents"
    if summary["hz"]:
        title += f", {summary['hz']:g} Hz"
    if summary["truncated"]:
        title += " (truncated)"
    fig.suptitle(title)
    ax_t.plot(ticks, durations * 1e3, lw=0.8, color="tab:blue", label="tick time")
    if summary["budget_s"] is not None:
        ax_t.axhline(summary["budget_s"] * 1e3, color="tab:red", ls="--", lw=1,
                     label=f"budget {_ms(summary['budget_s'])}")
    ax_t.set_ylabel("tick time (ms)")
    ax_t.set_ylim(bottom=0)
    ax_t.legend(loc="upper right", fontsize="small")
    ax_t.grid(alpha=0.3)
    ax_l.step(ticks, levels, where="post", color="tab:orange", lw=1)
    top = max(4, int(levels.max()) if levels.size else 0)
    ax_l.set_yticks(range(top + 1))
    ax_l.set_ylim(-0.3, top + 0.3)
    ax_l.set_ylabel("degradation level")
    ax_l.set_xlabel("tick")
    ax_l.grid(alpha=0.3)
    if heat:
        ax_h = fig.add_subplot(grid[:, 1])
        image = ax_h.imshow(scan.occupancy.reshape(size, size), cmap="viridis", vmin=0,
                            origin="upper", interpolation="nearest")
        ax_h.set_title(f"{summary['world'].get('name')} occupancy "
                       f"(observed cell, {len(scan.ticks)} ticks)", fontsize="medium")
        ax_h.set_xlabel("column")
        ax_h.set_ylabel("row")
        fig.colorbar(image, ax=ax_h, shrink=0.8, label="agent-ticks")
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------ diff
_Found = tuple[str, "int | None", Any, Any]
"""(field, first differing agent or None, value in A, value in B)."""


def _first_key_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any]:
    """The first (sorted) key path where two JSON-like values differ, and the two values."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b or a[key] != b[key]:
                return _first_key_difference(a.get(key, "<absent>"), b.get(key, "<absent>"),
                                             f"{prefix}.{key}")
    return prefix, a, b


def _row(a: np.ndarray, i: int) -> list[int]:
    return [int(v) for v in a[i]]


def _compare_arrays(name: str, a: np.ndarray, b: np.ndarray) -> _Found | None:
    """(field, agent, value in A, value in B) of the first difference of two (n, k) arrays."""
    import numpy as np

    if a.shape != b.shape:
        what = "agent count" if a.shape[0] != b.shape[0] else f"{name} shape"
        return what, None, list(a.shape), list(b.shape)
    rows = np.flatnonzero((a != b).any(axis=1)) if a.size else ()
    if len(rows) == 0:
        return None
    i = int(rows[0])
    return name, i, _row(a, i), _row(b, i)


def _compare_ticks(ra: TickRecord, rb: TickRecord) -> _Found | None:
    """The first difference of two records of the same tick (timings and times ignored)."""
    import numpy as np

    found = _compare_arrays("observations", ra.observations, rb.observations)
    if found is not None:
        return found
    if ra.level != rb.level:
        return "level", None, ra.level, rb.level
    sa, sb = np.unique(ra.stale_agents), np.unique(rb.stale_agents)
    if sa.shape != sb.shape or (sa != sb).any():
        agent = int(np.setxor1d(sa, sb)[0])
        return "stale agents", agent, bool(np.isin(agent, sa)), bool(np.isin(agent, sb))
    return _compare_arrays("actions", ra.actions, rb.actions)


def _diff(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]
          ) -> tuple[dict[str, Any] | None, int, dict[str, bool]]:
    """(first difference or None, ticks that agreed, {"a": truncated, "b": truncated})."""
    from engine.ticklog.reader import TickLogReader

    with TickLogReader(path_a) as ra, TickLogReader(path_b) as rb:
        truncated = {"a": bool(ra.truncated), "b": bool(rb.truncated)}
        ha, hb = ra.header.to_dict(), rb.header.to_dict()
        for name in HEADER_FIELDS:
            if ha[name] != hb[name]:
                key, va, vb = _first_key_difference(ha[name], hb[name], name)
                return ({"tick": None, "field": f"header {key}", "agent": None, "a": va,
                         "b": vb}, 0, truncated)
        ita: Iterator[TickRecord] = ra.ticks()
        itb: Iterator[TickRecord] = rb.ticks()
        agreed = 0
        while True:
            xa, xb = next(ita, None), next(itb, None)
            if xa is None and xb is None:
                return None, agreed, truncated
            if xa is None or xb is None or xa.tick != xb.tick:
                ta = None if xa is None else xa.tick
                tb = None if xb is None else xb.tick
                tick = min(t for t in (ta, tb) if t is not None)
                return ({"tick": tick, "field": "missing tick", "agent": None,
                         "a": ta == tick, "b": tb == tick, "next_a": ta, "next_b": tb},
                        agreed, truncated)
            found = _compare_ticks(xa, xb)
            if found is not None:
                what, agent, va, vb = found
                return ({"tick": xa.tick, "field": what, "agent": agent, "a": va, "b": vb},
                        agreed, truncated)
            agreed += 1


def first_difference(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]
                     ) -> dict[str, Any] | None:
    """The first difference between two tick logs, or None when they agree.

    Header fields that decide a run (:data:`HEADER_FIELDS`: n_agents, seed, model_hash,
    config, world) are compared first, then the ticks in step; of one tick, observations, then
    level, then the stale set, then actions (wall times, durations and timings are ignored, and
    so are belief snapshots). The result has ``tick`` (None for a header field), ``field``
    (``"header <name>[.<key>...]"``, ``"missing tick"``, ``"agent count"``,
    ``"observations"``, ``"observations shape"``, ``"level"``, ``"stale agents"``,
    ``"actions"``, ``"actions shape"``), ``agent`` (the first differing agent, or None),
    ``a`` and ``b`` (the two values: the agent's row for arrays, whether the agent is stale
    for the stale set, whether the tick is present for a missing tick, with ``next_a`` and
    ``next_b`` the tick each log has there, None past its end). Raises
    :class:`engine.ticklog.TickLogError` for a file that is not a readable tick log.
    """
    return _diff(path_a, path_b)[0]


def format_difference(diff: Mapping[str, Any]) -> str:
    """One or two lines naming a difference from :func:`first_difference`."""
    fld, tick, agent = diff["field"], diff["tick"], diff["agent"]
    if tick is None:
        return (f"logs differ in the header: {fld[len('header '):]} is {diff['a']!r} in A, "
                f"{diff['b']!r} in B")
    if fld == "missing tick":
        def where(present: bool, nxt: int | None) -> str:
            if present:
                return "has it"
            return "has ended" if nxt is None else f"goes on at tick {nxt}"

        return (f"logs differ at tick {tick}: it is missing from "
                f"{'B' if diff['a'] else 'A'}\n"
                f"A {where(diff['a'], diff['next_a'])}, B {where(diff['b'], diff['next_b'])}")
    if fld == "stale agents":
        return (f"logs differ at tick {tick}: stale agents: agent {agent} is "
                f"{'' if diff['a'] else 'not '}stale in A, {'' if diff['b'] else 'not '}"
                f"stale in B")
    if agent is None:
        return f"logs differ at tick {tick}: {fld}: A {diff['a']}, B {diff['b']}"
    return f"logs differ at tick {tick}: {fld} of agent {agent}: A {diff['a']}, B {diff['b']}"


# ------------------------------------------------------------------------------------- cli
def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` and ``diff`` subcommands to ``subparsers`` (built with its
    ``parser_class``); dispatch ``args.command`` to :func:`main_inspect` / :func:`main_diff`."""
    exit_codes = "exit codes: 0 done; 2 not a readable tick log, or a bad argument"
    inspect = subparsers.add_parser(
        "inspect", help="summarize a tick log: ticks, tick time, degradation, actions",
        description="Summarize a tick log written by 'agentloop run' (an MCAP file): header "
                    "(agents, rate, world, engine version), whether the file is complete or "
                    "was cut off by a crash, ticks and gaps, the tick time distribution "
                    "against the budget 1/hz, the degradation timeline (ticks at each level "
                    "and runs of ticks at non-zero levels), stale agents, a histogram of the "
                    "actions of each control factor and the number of belief snapshots. The "
                    "log is streamed: memory does not grow with its length.",
        epilog=exit_codes)
    inspect.add_argument("log", metavar="LOG", help="tick log (.mcap) to summarize")
    inspect.add_argument("--plot", metavar="PATH", default=None,
                         help="also draw tick time and level over ticks and, for grid "
                              "worlds, where the agents were (heatmap) into PATH (format "
                              "from the extension, e.g. out.png; needs matplotlib)")
    inspect.add_argument("--json", action="store_true",
                         help="print the summary as JSON instead of text")
    diff = subparsers.add_parser(
        "diff", help="compare two tick logs; name the first tick where they differ",
        description="Stream two tick logs in step and name the first difference: a header "
                    "field that decides the run (agents, seed, model hash, config, world), a "
                    "tick missing from one log, or a tick's observations, level, stale "
                    "agents or actions (with the first differing agent and both values). "
                    "Wall times, tick durations and timings are expected to differ and are "
                    "ignored, as are belief snapshots.",
        epilog="exit codes: 0 the logs agree; 1 they differ; 2 not a readable tick log")
    diff.add_argument("a", metavar="A", help="first tick log")
    diff.add_argument("b", metavar="B", help="second tick log")


def _error(command: str, message: object) -> int:
    text = " ".join(str(message).split())
    print(f"agentloop {command}: error: {text}", file=sys.stderr)
    return EXIT_USAGE


def main_inspect(args: argparse.Namespace) -> int:
    """Run ``agentloop inspect``: print the summary of ``args.log`` (text, or JSON with
    ``args.json``), draw ``args.plot`` if given. Returns 0, or 2 with one line on stderr."""

    plot = getattr(args, "plot", None)
    plt = None
    if plot is not None:
        try:
            plt = _import_pyplot()
        except ImportError:
            return _error("inspect", PLOT_MISSING)
        problem = _check_plot_path(plot)
        if problem is not None:
            return _error("inspect", problem)
    try:
        from engine.ticklog.reader import TickLogReader

        with TickLogReader(args.log) as reader:
            scan = _scan(reader, occupancy=plot is not None)
            summary = _summary(reader, scan)
    except TickLogError as exc:
        return _error("inspect", exc)
    except OSError as exc:
        return _error("inspect", f"cannot read {args.log!r}: {exc.strerror or exc}")
    if plot is not None:
        try:
            _draw(plt, plot, summary, scan)
        except (OSError, ValueError) as exc:
            return _error("inspect", f"cannot write --plot {plot!r}: "
                                     f"{getattr(exc, 'strerror', None) or exc}")
    if getattr(args, "json", False):
        out = dict(summary)
        if plot is not None:
            out["plot"] = plot
        print(json.dumps(out, indent=2, default=str))
    else:
        print(format_summary(summary))
        if plot is not None:
            print(f"{'plot':<11}{plot}")
    return EXIT_OK


def main_diff(args: argparse.Namespace) -> int:
    """Run ``agentloop diff``: 0 when ``args.a`` and ``args.b`` agree (prints "logs agree on
    N ticks"), 1 when they differ (prints the first difference), 2 for a bad file."""

    try:
        found, agreed, truncated = _diff(args.a, args.b)
    except TickLogError as exc:
        return _error("diff", exc)
    except OSError as exc:
        return _error("diff", f"{exc.strerror or exc}")
    if found is None:
        cut = [name.upper() for name, t in truncated.items() if t]
        note = f" ({' and '.join(cut)} truncated)" if cut else ""
        print(f"logs agree on {agreed} ticks{note}")
        return EXIT_OK
    print(format_difference(found))
    return EXIT_DIFFER
