"""The PNG plots of a benchmark run (matplotlib, when installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perf.bench.config import HELD_MODEL, IMPL_NAMES, engine_impl
from perf.bench.report import find_figure


def write_plots(results: dict[str, Any], directory: Path, stem: str) -> list[str]:
    """Throughput against population (log-log), latency and held-rate PNGs; their paths.

    Returns [] when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    figs = results.get("figures", [])

    curves: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = {}
    for f in figs:
        if f["group"] == "throughput":
            _, model, L, n, impl = f["key"].split("/")
            curves.setdefault(f"{model} {L.replace('L', 'policy_len ')}", {}).setdefault(
                impl, []).append((int(n[2:]), f))
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
        for ax, (title, impls) in zip(axes[0], curves.items(), strict=True):
            pymdp_rate = None
            for impl, pts in sorted(impls.items()):
                pts.sort(key=lambda p: p[0])
                xs = [p[0] for p in pts]
                ys = [p[1]["median"] for p in pts]
                lo = [p[1]["median"] - p[1]["min"] for p in pts]
                hi = [p[1]["max"] - p[1]["median"] for p in pts]
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                            label=IMPL_NAMES.get(impl, impl))
                pymdp_rate = pymdp_rate or pts[0][1].get("pymdp")
            if pymdp_rate:
                ax.axhline(pymdp_rate, color="grey", linestyle="--",
                           label="pymdp 0.0.7.1 (1/latency)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("agents")
            ax.set_ylabel("agent-steps/s")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-throughput.png"))

    lat = [f for f in figs if f["group"] == "step latency"]
    if lat:
        groups = list(dict.fromkeys(f["key"].rsplit("/", 1)[0] for f in lat))
        impls = list(dict.fromkeys(f["impl"] for f in lat))
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(groups)), 4.5))
        width = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for j, g in enumerate(groups):
                f = find_figure(results, f"{g}/{impl}")
                if f:
                    xs.append(j + i * width)
                    ys.append(f["median"])
            ax.bar(xs, ys, width, label=IMPL_NAMES.get(impl, impl))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
        ax.set_xticklabels([g.split("/", 1)[1].replace("/L", "\nL=") for g in groups],
                           fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("us per step, one agent (median)")
        ax.set_title("Step latency")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-latency.png"))

    held = [f for f in figs if f["group"] == "held rate"]
    if held:
        rates = list(dict.fromkeys(f["key"].split("/")[3] for f in held))
        impls = list(dict.fromkeys(f["impl"] for f in held))
        fig, ax = plt.subplots(figsize=(6, 4.5))
        width = 0.8 / (len(impls) + 1)
        for i, impl in enumerate(impls):
            ys = [(find_figure(results, f"{held[0]['key'].rsplit('/', 2)[0]}/{r}/{impl}")
                   or {"median": 0})["median"] for r in rates]
            ax.bar([j + i * width for j in range(len(rates))], ys, width,
                   label=IMPL_NAMES.get(impl, impl))
        pym = [(find_figure(results, f"{held[0]['key'].rsplit('/', 2)[0]}/{r}/{engine_impl(2)}")
                or {}).get("pymdp") or 0 for r in rates]
        ax.bar([j + len(impls) * width for j in range(len(rates))], pym, width,
               label="pymdp 0.0.7.1 (budget / latency)")
        ax.set_xticks([j + width * len(impls) / 2 for j in range(len(rates))])
        ax.set_xticklabels(rates)
        ax.set_yscale("log")
        ax.set_ylabel("largest population held")
        ax.set_title(f"Largest population at full quality ({HELD_MODEL})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save(fig, plt, directory / f"{stem}-held.png"))
    return paths


def _save(fig: Any, plt: Any, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
