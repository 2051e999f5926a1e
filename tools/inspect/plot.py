"""``agentloop inspect --plot``: tick time, level and the share of each action over ticks, the
tick-time distribution and, for grid worlds (world ``name`` ``grid`` or ``foraging`` with a
``size``), where the agents were (observation modality 0 is the observed cell, row-major
``size x size``), summed over ticks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tools.inspect.scan import Scan, grid_size, scan_ticks
from tools.inspect.summary import summary_of
from tools.inspect.text import format_ms

PLOT_MISSING = "agentloop inspect --plot needs matplotlib: pip install 'agentloop[plot]'"


def import_pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; ImportError (with :data:`PLOT_MISSING`) if
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(PLOT_MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str) -> str | None:
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
    the summary. See :func:`draw` for the panels. Raises ImportError (:data:`PLOT_MISSING`)
    without matplotlib, ``TickLogError`` for a bad log, OSError when ``path`` cannot be
    written."""
    from engine.ticklog.logset import open_log

    plt = import_pyplot()
    with open_log(log) as reader:
        scan = scan_ticks(reader, occupancy=True)
        summary = summary_of(reader, scan)
    draw(plt, os.fspath(path), summary, scan)
    return summary


MOVE_NAMES = ("stay", "up", "down", "left", "right")
"""Control factor 0 of the grid worlds (``world.models.MOVES``)."""
MAX_ACTIONS_DRAWN = 8
"""The most frequent actions drawn in the action timeline; the others as one band."""


def draw(plt: Any, path: str, summary: Mapping[str, Any], scan: Scan) -> None:
    """The figure: over ticks, tick time (ms) against the budget, the degradation level and
    the share of each action of control factor 0 (stacked); the tick-time distribution
    (histogram, with the budget) and, for grid worlds, the occupancy heatmap (observed cell
    counts summed over ticks)."""
    import numpy as np

    ticks = np.frombuffer(scan.ticks, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    durations = np.frombuffer(scan.durations, dtype=np.float64) if scan.ticks else np.zeros(0)
    levels = np.frombuffer(scan.levels, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    size = grid_size(summary["world"])
    heat = scan.occupancy is not None and size is not None
    fig = plt.figure(figsize=(14, 9), layout="constrained")
    grid = fig.add_gridspec(3, 2, width_ratios=[1.6, 1])
    ax_t = fig.add_subplot(grid[0, 0])
    ax_l = fig.add_subplot(grid[1, 0], sharex=ax_t)
    ax_a = fig.add_subplot(grid[2, 0], sharex=ax_t)
    ax_d = fig.add_subplot(grid[0, 1] if heat else grid[:, 1])
    name = os.path.basename(summary["path"])
    title = f"{name}: {summary['agents']} agents"
    if summary["hz"]:
        title += f", {summary['hz']:g} Hz"
    if summary["truncated"]:
        title += " (truncated)"
    fig.suptitle(title)
    budget_ms = None if summary["budget_s"] is None else summary["budget_s"] * 1e3
    ax_t.plot(ticks, durations * 1e3, lw=0.8, color="tab:blue", label="tick time")
    if budget_ms is not None:
        ax_t.axhline(budget_ms, color="tab:red", ls="--", lw=1,
                     label=f"budget {format_ms(summary['budget_s'])}")
    ax_t.set_ylabel("tick time (ms)")
    ax_t.set_ylim(bottom=0)
    ax_t.legend(loc="upper right", fontsize="small")
    ax_t.grid(alpha=0.3)
    ax_l.step(ticks, levels, where="post", color="tab:orange", lw=1)
    top = max(4, int(levels.max()) if levels.size else 0)
    ax_l.set_yticks(range(top + 1))
    ax_l.set_ylim(-0.3, top + 0.3)
    ax_l.set_ylabel("degradation level")
    ax_l.grid(alpha=0.3)
    _draw_actions(ax_a, scan, summary)
    _draw_distribution(ax_d, durations * 1e3, budget_ms, summary)
    if heat:
        ax_h = fig.add_subplot(grid[1:, 1])
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


def _draw_distribution(ax: Any, ms: Any, budget_ms: float | None,
                       summary: Mapping[str, Any]) -> None:
    """Histogram of the tick times (ms) with the budget and the p50 / p99 lines."""
    import numpy as np

    if ms.size:
        ax.hist(ms, bins=int(np.clip(np.sqrt(ms.size), 10, 60)), color="tab:blue", alpha=0.8)
        tt = summary["tick_time"]
        for key, style in (("p50_s", ":"), ("p99_s", "-.")):
            ax.axvline(tt[key] * 1e3, color="k", ls=style, lw=1,
                       label=f"{key[:3]} {format_ms(tt[key])}")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="tab:red", ls="--", lw=1,
                   label=f"budget {format_ms(budget_ms / 1e3)}")
    ax.set_title("tick-time distribution", fontsize="medium")
    ax.set_xlabel("tick time (ms)")
    ax.set_ylabel("ticks")
    ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)


def _draw_actions(ax: Any, scan: Scan, summary: Mapping[str, Any]) -> None:
    """Each action's share of control factor 0 over ticks (stacked; the most frequent
    :data:`MAX_ACTIONS_DRAWN`, the rest as "other")."""
    import numpy as np

    starts, shares = (scan.timeline.shares() if scan.timeline is not None
                      else (np.zeros(0, np.int64), np.zeros((0, 0))))
    ax.set_ylabel("share of agents")
    ax.set_xlabel("tick")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if not starts.size or not shares.shape[1]:
        ax.set_title("actions (factor 0): none recorded", fontsize="medium")
        return
    names = (MOVE_NAMES if grid_size(summary["world"]) is not None
             and shares.shape[1] <= len(MOVE_NAMES) else None)
    order = np.argsort(-shares.sum(axis=0), kind="stable")[:MAX_ACTIONS_DRAWN]
    order.sort()
    bands = [shares[:, a] for a in order]
    labels = [names[a] if names else f"action {a}" for a in order]
    rest = 1.0 - np.sum(bands, axis=0)
    if shares.shape[1] > len(order):
        bands.append(np.clip(rest, 0.0, 1.0))
        labels.append("other")
    width = scan.timeline.width if scan.timeline is not None else 1
    edges = np.append(starts, starts[-1] + width)      # the last bin drawn to its end
    bands = [np.append(b, b[-1]) for b in bands]
    ax.stackplot(edges, *bands, labels=labels, step="post", alpha=0.85)
    per = "" if width == 1 else f", bins of {width} ticks"
    ax.set_title(f"actions (factor 0, share of agents{per})", fontsize="medium")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
