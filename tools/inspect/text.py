"""The summary of :func:`tools.inspect.summary.summarize` as aligned text lines."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_PRINT_RUNS = 12
_PRINT_ACTIONS = 16


def format_ms(seconds: float | None) -> str:
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
    files = s.get("files") or {"count": 1, "rotated_away": [], "missing_next": None}
    if files["count"] > 1 or files["rotated_away"] or files["missing_next"]:
        text = (f"{files['count']} of a rotated set: {files['first']}"
                + (f" .. {files['last']}" if files["count"] > 1 else ""))
        gone = files["rotated_away"]
        if gone:
            text += f"; {_plural(len(gone), 'earlier file')} rotated away (from {gone[0]})"
        if files["missing_next"]:
            text += f"; cut off: {files['missing_next']} is missing"
        put("files", text)
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
        put("rate", f"{s['hz']:g} Hz (tick budget {format_ms(s['budget_s'])})")
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
    visual = s["extra"].get("visual") if isinstance(s["extra"], dict) else None
    if isinstance(visual, dict):
        every = visual.get("every")
        put("visual", f"{', '.join(map(str, visual.get('topics', [])))} every "
                      f"{_every(every)} "
                      f"(a picture in Foxglove)")
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
        text = (f"p50 {format_ms(tt['p50_s'])}, p90 {format_ms(tt['p90_s'])}, "
                f"p99 {format_ms(tt['p99_s'])}, max {format_ms(tt['max_s'])}")
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
        reasons = [f"{reason} {count:,}" for reason, count in st.get("by_reason", {}).items()
                   if count]
        if st.get("unrecorded"):
            reasons.append(f"{st['unrecorded']:,} without a recorded reason")
        put("", "by reason: " + ", ".join(reasons))
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


def _every(every: Any) -> str:
    if every == 1:
        return "tick"
    return f"{every} ticks" if isinstance(every, int) else "? ticks"
