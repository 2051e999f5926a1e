"""The regression check of ``--compare``: agentloop figures that got worse between two runs."""

from __future__ import annotations

from typing import Any

from perf.bench.config import REGRESSION_THRESHOLD
from perf.bench.report import number_text


def compare(old: dict[str, Any], new: dict[str, Any],
            threshold: float = REGRESSION_THRESHOLD) -> dict[str, list[dict[str, Any]]]:
    """Agentloop figures of ``old`` that got more than ``threshold`` worse in ``new``.

    A figure is compared by its ratio to pymdp 0.0.7.1 (``compare_by == "ratio"``: worse means
    a smaller ratio) or by its value (``"value"``, in its ``better`` direction). Returns
    ``regressions`` (each with old, new and the change), ``missing`` (in old, not comparable
    in new: absent, or its ratio or value not measured) and ``compared`` (the figures checked).
    """
    new_by_key = {f.get("key"): f for f in new.get("figures", []) if isinstance(f, dict)}
    out: dict[str, list[dict[str, Any]]] = {"regressions": [], "missing": [], "compared": []}
    for fig in old.get("figures", []):
        if not isinstance(fig, dict):
            continue
        how = fig.get("compare_by")
        if how not in ("ratio", "value"):
            continue
        key = fig.get("key")
        field = "ratio" if how == "ratio" else "median"
        old_v = fig.get(field)
        if not isinstance(old_v, (int, float)) or not old_v > 0:
            continue
        cur = new_by_key.get(key)
        new_v = cur.get(field) if cur else None
        if not isinstance(new_v, (int, float)):
            why = "absent from the new results" if cur is None else f"no {field} in the new run"
            out["missing"].append({"key": key, "label": fig.get("label", ""), "why": why})
            continue
        better = "higher" if how == "ratio" else fig.get("better", "higher")
        if better == "higher":
            worse_by = (old_v - new_v) / old_v
        else:
            worse_by = (new_v - old_v) / old_v
        item = {"key": key, "label": fig.get("label", ""), "impl": fig.get("impl", ""),
                "by": field, "old": old_v, "new": new_v, "worse_by": worse_by}
        out["compared"].append(item)
        if worse_by > threshold:
            out["regressions"].append(item)
    return out


def format_comparison(cmp: dict[str, list[dict[str, Any]]], old_name: str = "old",
                      threshold: float = REGRESSION_THRESHOLD) -> str:
    """The printed verdict of :func:`compare`."""
    lines = [f"Regression check against {old_name}: {len(cmp['compared'])} figures compared, "
             f"{len(cmp['regressions'])} more than {100 * threshold:.0f}% worse, "
             f"{len(cmp['missing'])} missing"]
    for r in cmp["regressions"]:
        what = "ratio vs pymdp" if r["by"] == "ratio" else "value"
        lines.append(f"  WORSE {100 * r['worse_by']:5.1f}%  {r['key']}  ({what} "
                     f"{number_text(r['old'])} -> {number_text(r['new'])})  {r['label']}")
    for m in cmp["missing"]:
        lines.append(f"  missing  {m['key']}: {m['why']}")
    return "\n".join(lines)
