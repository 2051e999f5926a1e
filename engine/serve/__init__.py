"""``agentloop serve``: an engine served to a simulator in another process, in any language,
through a documented shared-memory region and two POSIX semaphores (docs/abi.md).

:mod:`engine.serve.layout` defines the region, :mod:`engine.serve.server` serves an engine,
:mod:`engine.serve.client` is the Python client; the C one is the header ``agentloop_abi.h``
in :func:`include_dir` (``include/agentloop_abi.h`` in the repository links to it).
"""

from pathlib import Path

from engine.serve.client import ServeClient
from engine.serve.layout import ABI_VERSION, DEFAULT_NAME
from engine.serve.server import ServeOutcome, Server

__all__ = ["ABI_VERSION", "DEFAULT_NAME", "ServeClient", "ServeOutcome", "Server", "include_dir"]


def include_dir() -> str:
    """The folder holding ``agentloop_abi.h``, installed with the package: what a C or C++
    simulator passes to its compiler as ``-I`` (``agentloop serve --include-dir`` prints it)."""
    return str(Path(__file__).resolve().parent / "include")
