"""``agentloop inspect --plot``: tick time and level over ticks and, for grid worlds (world
``name`` ``grid`` or ``foraging`` with a ``size``), where the agents were (observation
modality 0 is the observed cell, row-major ``size x size``), summed over ticks."""

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


def draw(plt: Any, path: str, summary: Mapping[str, Any], scan: Scan) -> None:
    """Tick time (ms) over ticks with the budget line, level over ticks and, for grid worlds,
    the occupancy heatmap (observed cell counts summed over ticks)."""
    import numpy as np

    ticks = np.frombuffer(scan.ticks, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    durations = np.frombuffer(scan.durations, dtype=np.float64) if scan.ticks else np.zeros(0)
    levels = np.frombuffer(scan.levels, dtype=np.int64) if scan.ticks else np.zeros(0, np.int64)
    size = grid_size(summary["world"])
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
