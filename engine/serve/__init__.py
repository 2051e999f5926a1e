"""``agentloop serve``: an engine served to a simulator in another process, in any language,
through a documented shared-memory region and two POSIX semaphores (docs/abi.md).

:mod:`engine.serve.layout` defines the region, :mod:`engine.serve.server` serves an engine,
:mod:`engine.serve.client` is the Python client (``include/agentloop_abi.h`` the C one).
"""

from engine.serve.client import ServeClient
from engine.serve.layout import ABI_VERSION, DEFAULT_NAME
from engine.serve.server import ServeOutcome, Server

__all__ = ["ABI_VERSION", "DEFAULT_NAME", "ServeClient", "ServeOutcome", "Server"]
