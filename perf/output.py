"""What the benchmark scripts share: timestamped progress lines and their JSON result files."""

from __future__ import annotations

import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("perf/results")


def log(message: str) -> None:
    """A progress line on stderr, stamped with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def save_results(kind: str, results: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``results`` as JSON to ``path`` (default ``perf/results/<kind>-<date>-<host>.json``)
    and log where."""
    stamp = f"{datetime.date.today().isoformat()}-{platform.node()}"
    path = path or RESULTS_DIR / f"{kind}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    log(f"wrote {path}")
    return path
