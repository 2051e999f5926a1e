"""Where a result came from: the git commit and the versions of Python and the numeric packages."""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import numba
import numpy as np

from perf.kernels.plan import REPO_ROOT


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__,
                                  "numba": numba.__version__}
    try:
        from importlib.metadata import version

        out["pymdp"] = version("inferactively-pymdp")
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        out["pymdp"] = None
    return out

