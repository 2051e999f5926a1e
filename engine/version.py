"""agentloop's version: the installed package's metadata, else ``pyproject.toml`` beside it."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
_VERSION = re.compile(r'^version\s*=\s*"([^"]+)"', re.MULTILINE)


def package_version() -> str:
    """The installed ``agentloop`` distribution's version; for a source tree that is not
    installed, the ``version`` of ``pyproject.toml``'s ``[project]`` table (``"unknown"``
    when neither is there)."""
    try:
        return metadata.version("agentloop")
    except metadata.PackageNotFoundError:
        return pyproject_version(PYPROJECT)


def pyproject_version(path: Path) -> str:
    """The ``version`` in the ``[project]`` table of the ``pyproject.toml`` at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    project = text.split("[project]", 1)[1] if "[project]" in text else ""
    project = re.split(r"^\[", project, maxsplit=1, flags=re.MULTILINE)[0]
    found = _VERSION.search(project)
    return found.group(1) if found else "unknown"
