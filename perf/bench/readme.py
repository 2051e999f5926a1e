"""The README's results table and the generated section of ``perf/RESULTS.md``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf.bench.config import (
    AGENTLOOP,
    AGENTLOOP_MT,
    HELD_MODEL,
    MARK_END,
    MARK_START,
    PERF_DIR,
    PYMDP1,
    PYMDP1_VMAP,
    engine_impl,
)
from perf.bench.report import (
    PYMDP1_MODE_HEADERS,
    ZOO_HEADERS,
    figure_rows,
    find_figure,
    md_table,
    pymdp1_mode_caption,
    pymdp1_mode_rows,
    ratio_text,
    value_text,
    zoo_rows,
)

#: The dense model whose figures stand beside the headline's sparse grid-10.
DENSE_MODEL = "dense-grid-10"


def zoo_table(results: dict[str, Any]) -> str:
    """The per-model table of the zoo stage (Markdown; empty when the zoo did not run)."""
    rows = zoo_rows(results)
    if not rows:
        return ""
    out = ("Per model (the zoo, `perf/models.py`; float32 state, agentloop's `Agents` on every "
           "thread against the strongest peer measured in the same run):\n\n"
           + md_table(list(ZOO_HEADERS), rows))
    mode1 = pymdp1_mode_rows(results)
    if mode1:
        out += (f"\n\n{pymdp1_mode_caption(results)}:\n\n"
                + md_table(list(PYMDP1_MODE_HEADERS), mode1))
    return out


def _largest(results: dict[str, Any], prefix: str, impl: str) -> dict[str, Any] | None:
    """The figure ``prefix/N=<n>/impl`` with the largest n."""
    best: tuple[int, dict[str, Any]] | None = None
    for f in results.get("figures", []):
        key = f.get("key", "")
        if key.startswith(prefix + "/N=") and key.endswith("/" + impl):
            n = int(key[len(prefix) + 3:].split("/")[0])
            if best is None or n > best[0]:
                best = (n, f)
    return best[1] if best else None


def readme_table(results: dict[str, Any]) -> str:
    """The README's results table (Markdown), generated from a results dict: the headline
    figures, agentloop against pymdp 0.0.7.1 (the ratio) and pymdp 1.x, and what was not
    measured."""
    rows: list[list[str]] = []

    def row(what: str, ours: dict[str, Any] | None, jax: dict[str, Any] | None,
            fmt: Callable[[dict[str, Any]], str] = value_text) -> None:
        if ours is None:
            return
        pymdp = "-" if ours.get("pymdp") is None else \
            fmt({**ours, "median": ours["pymdp"], "repeats": 1})
        rows.append([what, fmt(ours), pymdp, ratio_text(ours.get("ratio")),
                     fmt(jax) if jax else "-"])

    w2 = engine_impl(2)
    lens = sorted({f["key"].split("/")[2] for f in results.get("figures", [])
                   if f["key"].startswith(f"latency/{HELD_MODEL}/")})
    for L in lens:
        row(f"step latency, one agent, {HELD_MODEL} {L.replace('L', 'policy_len ')}",
            find_figure(results, f"latency/{HELD_MODEL}/{L}/{AGENTLOOP}"),
            find_figure(results, f"latency/{HELD_MODEL}/{L}/{PYMDP1}"))
    for L in sorted({f["key"].split("/")[2] for f in results.get("figures", [])
                     if f["key"].startswith(f"throughput/{HELD_MODEL}/")}):
        ours = _largest(results, f"throughput/{HELD_MODEL}/{L}", w2)
        jax = _largest(results, f"throughput/{HELD_MODEL}/{L}", PYMDP1)
        if ours:
            n = ours["key"].split("/")[3][2:]
            jn = f" ({int(jax['key'].split('/')[3][2:]):,} agents)" if jax else ""
            row(f"agent-steps/s, {int(n):,} agents, {HELD_MODEL} "
                f"{L.replace('L', 'policy_len ')}, 2 workers", ours, jax)
            if jax:
                rows[-1][4] = value_text(jax) + jn
    for f in results.get("figures", []):
        parts = f["key"].split("/")
        if f["group"] == "zoo" and f["impl"] == AGENTLOOP_MT and parts[1] == DENSE_MODEL \
                and parts[3].startswith("N="):
            vmap = find_figure(results, "/".join(parts[:4] + [PYMDP1_VMAP]))
            row(f"agent-steps/s, {int(parts[3][2:]):,} agents, {DENSE_MODEL} "
                f"{parts[2].replace('L', 'policy_len ')}, in process, every thread", f, vmap)
            if vmap:
                rows[-1][4] = value_text(vmap) + " (jit(vmap), one shared model)"
    for f in results.get("figures", []):
        if f["group"] == "held rate" and f["impl"] == w2:
            hz = f["key"].split("/")[3]
            jax = find_figure(results, f["key"].rsplit("/", 1)[0] + f"/{PYMDP1}")
            row(f"largest population at {hz.replace('Hz', ' Hz')} (p99 tick under budget)", f,
                jax, lambda x: f"{x['median']:,.0f}")
            if jax:
                rows[-1][4] += " (of the sizes measured)"
    mem = find_figure(results, f"memory/{HELD_MODEL}/L1/engine-arrays")
    row("memory per agent (engine arrays; model once)", mem,
        find_figure(results, f"memory/{HELD_MODEL}/L1/{PYMDP1}"), lambda x: f"{x['median']:,.0f} B")
    for f in results.get("figures", []):
        if f["group"] == "start-up" and f["impl"] != PYMDP1:
            n = int(f["key"].split("/")[3][2:])
            jax = next((g for g in results["figures"] if g["group"] == "start-up"
                        and g["impl"] == PYMDP1), None)
            row(f"start-up: {n:,} agents to their first tick", f, jax)
            if jax:
                rows[-1][4] = value_text(jax) + f" ({int(jax['key'].split('/')[3][2:]):,} agents)"
    q = find_figure(results, f"quantization/{HELD_MODEL}/L1/uint16/agreement")
    if q:
        rows.append(["decisions unchanged by uint16 beliefs (vs float64)",
                     f"{q['median']:.3f}%", "float64", "-", "-"])
    for what in ("flops", "bandwidth"):
        f = next((g for g in results.get("figures", []) if g["group"] == "share of machine"
                  and g["key"].startswith(f"peak/{HELD_MODEL}/L1/{what}/{w2}")), None)
        name = "FLOP/s" if what == "flops" else "memory bandwidth"
        row(f"share of the machine's measured {name}", f, None,
            lambda x: f"{x['median']:.2g}%")
    lines = [md_table(["figure", "agentloop", "pymdp 0.0.7.1", "vs pymdp 0.0.7.1",
                       "pymdp 1.x (JAX)"], rows)]
    zoo = zoo_table(results)
    if zoo:
        lines += ["", zoo]
    cfg = results.get("config", {})
    git = results.get("git", {}) or {}
    lines.append("")
    lines.append(f"Generated by `{results.get('command')}` on {results.get('started')} "
                 f"(host {results.get('host')}, {results.get('machine', {}).get('cpu_count')} "
                 f"cores, commit {str(git.get('commit'))[:10]}); medians [min-max] over "
                 f"{cfg.get('repeats')} alternating repeats, all measured in the same run.")
    nm = results.get("not_measured", [])
    if nm:
        lines.append("Not measured: " + "; ".join(f"{x['what']}: {x['reason']}" for x in nm)
                     + ".")
    return "\n".join(lines)


def results_md_section(results: dict[str, Any], json_path: str | None = None) -> str:
    """The generated section of ``perf/RESULTS.md`` (without the markers)."""
    out = [f"## Benchmark report: `{results.get('command')}`", "",
           "Generated by `python -m perf`; do not edit by hand (the text between the bench "
           "markers is replaced on every full run).", "", readme_table(results), "",
           "### Every figure", "",
           md_table(["group", "figure", "implementation", "median [min-max]", "pymdp 0.0.7.1",
                     "vs pymdp"], figure_rows(results))]
    if results.get("plots"):
        out += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({_rel(p)})"
                                          for p in results["plots"])]
    if json_path:
        out += ["", f"Raw results: `{_rel(json_path)}`."]
    return "\n".join(out)


def _rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(PERF_DIR))
    except ValueError:
        return str(path)


def update_marked_section(text: str, content: str, start: str = MARK_START,
                          end: str = MARK_END) -> str:
    """``text`` with what lies between the ``start`` and ``end`` markers replaced by
    ``content`` (markers appended at the end when absent); the rest is left as it was."""
    block = f"{start}\n{content.strip()}\n{end}"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i >= 0 and j >= 0:
        return text[:i] + block + text[j + len(end):]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + block + "\n"


def write_results_md(path: Path, section: str) -> None:
    """Regenerate ``path``'s bench section (the file is created when missing)."""
    text = path.read_text() if path.exists() else ""
    new = update_marked_section(text, section)
    if new != text:
        path.write_text(new)
