"""The printed report of a benchmark run, and the text formats its tables share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perf.bench.config import AGENTLOOP, AGENTLOOP_MT, IMPL_NAMES
from perf.bench.figures import median_of


def number_text(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    ax = abs(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if ax >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    if ax and ax < 1e-3:
        return f"{x:.2e}"
    return f"{x:.{digits}g}"


def ratio_text(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.3g}x"


def value_text(fig: dict[str, Any]) -> str:
    if fig.get("median") is None:
        return "-"
    digits = int(fig.get("digits", 3))
    text = f"{number_text(fig['median'], digits)} {fig['unit']}"
    if fig["repeats"] > 1:
        text += f" [{number_text(fig['min'], digits)}-{number_text(fig['max'], digits)}]"
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|")
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def figure_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for f in results.get("figures", []):
        rows.append([f["group"], f["label"], IMPL_NAMES.get(f["impl"], f["impl"]), value_text(f),
                     "-" if f.get("pymdp") is None else f"{number_text(f['pymdp'])} {f['unit']}",
                     ratio_text(f.get("ratio"))])
    return rows


ZOO_HEADERS = ("model", "policy_len", "agents", "agentloop steps/s", "strongest peer",
               "peer steps/s", "agentloop / peer", "pymdp 0.0.7.1 steps/s (1 process)",
               "one agent, agentloop", "% FLOP peak: agentloop", "% FLOP peak: peer",
               "what bounds agentloop")


def percent_text(x: float) -> str:
    """A share in percent: two significant digits, whole numbers from 100 up."""
    return f"{x:.2g}%" if x < 100 else f"{x:,.0f}%"


def _percent(shares: dict[str, float], impl: str | None) -> str:
    return percent_text(shares[impl]) if impl in shares else "-"


def zoo_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per zoo model and policy length (``raw.zoo``), in the order measured."""
    rows = []
    for z in (results.get("raw") or {}).get("zoo", []):
        ours = z["steps_per_s_per_repeat"].get(AGENTLOOP_MT) or []
        peer = z.get("strongest_peer")
        shares = z.get("flop_share_percent") or {}
        lat = (z.get("latency_us") or {}).get(AGENTLOOP)
        rows.append([
            z["model"], str(z["policy_len"]), f"{z['n']:,}",
            number_text(median_of(ours)) if ours else "-",
            IMPL_NAMES.get(peer, peer) if peer else "-",
            number_text(z.get("strongest_peer_rate")),
            ratio_text(z.get("ratio_vs_strongest")), number_text(z.get("pymdp_rate")),
            f"{number_text(lat)} us" if lat else "-", _percent(shares, AGENTLOOP_MT),
            _percent(shares, peer),
            z.get("bound", "-")])
    return rows


PYMDP1_MODE_HEADERS = ("model", "policy_len", "agents", "agentloop 0.0.7.1 semantics steps/s",
                       "agentloop pymdp1 mode steps/s", "pymdp 1.x peer",
                       "pymdp 1.x peer steps/s", "pymdp1 mode / peer")


def pymdp1_mode_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per zoo model and policy length where agentloop's pymdp 1.x mode was measured:
    both agentloop modes, the strongest pymdp 1.x form, and the mode's ratio to it (medians)."""
    rows = []
    for z in (results.get("raw") or {}).get("zoo", []):
        mode = z.get("pymdp1_mode")
        if not mode:
            continue
        ours = z["steps_per_s_per_repeat"].get(AGENTLOOP_MT) or []
        peer = mode.get("peer")
        rows.append([z["model"], str(z["policy_len"]), f"{z['n']:,}",
                     number_text(median_of(ours)) if ours else "-",
                     number_text(mode.get("steps_per_s")),
                     IMPL_NAMES.get(peer, peer) if peer else "-",
                     number_text(mode.get("peer_rate")), ratio_text(mode.get("ratio"))])
    return rows


def pymdp1_mode_caption(results: dict[str, Any]) -> str:
    """The settings both sides of the pymdp 1.x mode table ran with."""
    zoo = (results.get("raw") or {}).get("zoo", [])
    params = next((z["step_params"] for z in zoo if z.get("step_params")), None)
    said = ", ".join(f"{k} {v}" for k, v in params.items()) if params else "not recorded"
    return ("agentloop's pymdp 1.x mode (`InferenceConfig.pymdp1`, information gain summed per "
            "modality, every num_iter sweep) against the strongest pymdp 1.x form measured "
            f"beside it; both sides: {said}; medians of agent-steps/s")


def format_report(results: dict[str, Any]) -> str:
    """The printed report: every figure, median [min-max], pymdp 0.0.7.1 and the ratio."""
    git = results.get("git", {})
    out = [f"agentloop benchmark report  {results['started']}  host {results['host']}",
           f"command: {results['command']}",
           f"git {git.get('commit')} dirty={git.get('dirty')}  versions {results.get('versions')}",
           f"repeats {results.get('config', {}).get('repeats')}, alternating between "
           "implementations; ratio = times better than pymdp 0.0.7.1 in this run", ""]
    out.append(_table(["group", "figure", "implementation", "median [min-max]",
                       "pymdp 0.0.7.1", "vs pymdp"], figure_rows(results)))
    zoo = zoo_rows(results)
    if zoo:
        out += ["", "Per model (the zoo):", _table(ZOO_HEADERS, zoo)]
    mode1 = pymdp1_mode_rows(results)
    if mode1:
        out += ["", pymdp1_mode_caption(results) + ":", _table(PYMDP1_MODE_HEADERS, mode1)]
    if results.get("not_measured"):
        out += ["", "Not measured:"]
        out += [f"  {nm['what']}: not measured: {nm['reason']}" for nm in results["not_measured"]]
    if results.get("plots"):
        out += ["", "Plots: " + ", ".join(results["plots"])]
    if "elapsed_s" in results:
        out.append(f"\nelapsed {results['elapsed_s']:.0f} s")
    return "\n".join(out)


def find_figure(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((f for f in results.get("figures", []) if f.get("key") == key), None)
