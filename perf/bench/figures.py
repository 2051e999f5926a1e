"""The figures of a report: a median with its min and max over repeats and its ratio to
pymdp 0.0.7.1, and the check of a results dict's shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perf.bench.config import AGENTLOOP, SCHEMA


def median_of(values: Sequence[float]) -> float:
    s = sorted(values)
    k = len(s)
    return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])


def ratio_of(value: float | None, pymdp: float | None, better: str) -> float | None:
    """How many times better than pymdp ``value`` is (> 1: better), or None."""
    if value is None or pymdp is None or not value > 0 or not pymdp > 0:
        return None
    return pymdp / value if better == "lower" else value / pymdp


def make_figure(key: str, group: str, label: str, impl: str, unit: str, better: str,
                values: Sequence[float], pymdp: float | None = None, note: str = "",
                subject: str | None = None, compare_by: str | None = "auto") -> dict[str, Any]:
    """One figure of the report (a JSON-ready dict).

    ``values`` are the per-repeat values; the figure holds their median, min and max.
    ``pymdp`` is pymdp 0.0.7.1's value of the same figure in this run; ``ratio`` is
    :func:`ratio_of` the median. ``subject`` says whose figure it is (``agentloop`` figures are
    the ones ``--compare`` checks); ``compare_by`` is ``"ratio"``, ``"value"`` or None (never
    compared); ``"auto"``: ``"ratio"`` for agentloop figures, None for the others.
    """
    vals = [float(v) for v in values]
    median = median_of(vals) if vals else None
    if subject is None:
        subject = "agentloop" if impl.startswith(("engine", AGENTLOOP)) else impl
    if compare_by == "auto":
        compare_by = "ratio" if subject == "agentloop" else None
    return {"key": key, "group": group, "label": label, "impl": impl, "unit": unit,
            "better": better, "median": median, "min": min(vals) if vals else None,
            "max": max(vals) if vals else None, "repeats": len(vals), "values": vals,
            "pymdp": pymdp, "ratio": ratio_of(median, pymdp, better), "note": note,
            "subject": subject, "compare_by": compare_by}


_FIGURE_KEYS = ("key", "group", "label", "impl", "unit", "better", "median", "min", "max",
                "repeats", "pymdp", "ratio", "subject", "compare_by")


def validate_results(results: Any) -> list[str]:
    """Problems with a results dict's shape (empty when it is a valid report)."""
    problems: list[str] = []
    if not isinstance(results, dict):
        return ["not a JSON object"]
    for key in ("schema", "command", "started", "host", "figures", "not_measured"):
        if key not in results:
            problems.append(f"missing {key!r}")
    if results.get("schema") not in (None, SCHEMA):
        problems.append(f"schema {results.get('schema')!r} is not {SCHEMA!r}")
    figures = results.get("figures", [])
    if not isinstance(figures, list):
        return problems + ["'figures' is not a list"]
    seen: set[str] = set()
    for i, fig in enumerate(figures):
        if not isinstance(fig, dict):
            problems.append(f"figures[{i}] is not an object")
            continue
        missing = [k for k in _FIGURE_KEYS if k not in fig]
        if missing:
            problems.append(f"figures[{i}] ({fig.get('key')}) lacks {', '.join(missing)}")
        if fig.get("key") in seen:
            problems.append(f"figure key {fig.get('key')!r} repeats")
        seen.add(fig.get("key"))
        if fig.get("better") not in ("higher", "lower"):
            problems.append(f"figures[{i}] better={fig.get('better')!r}")
    for i, nm in enumerate(results.get("not_measured", [])):
        if not (isinstance(nm, dict) and "what" in nm and "reason" in nm):
            problems.append(f"not_measured[{i}] needs 'what' and 'reason'")
    return problems
