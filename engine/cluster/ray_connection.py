"""Joining a Ray cluster: the ``ray`` module on demand, and :func:`connect` (quiet unless
``AGENTLOOP_RAY_VERBOSE=1``)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from engine.errors import ConfigError

log = logging.getLogger("agentloop.cluster")

#: tries at joining a cluster through Ray Client (ray://) before giving up, and the back-off
CLIENT_CONNECT_ATTEMPTS = 3
CLIENT_CONNECT_BACKOFF_S = 1.0
#: set to 1 to see Ray's own output: its INFO and WARNING lines and what its actors print
RAY_VERBOSE_ENV = "AGENTLOOP_RAY_VERBOSE"


def ray_verbose() -> bool:
    """Whether the user asked for Ray's own output (``AGENTLOOP_RAY_VERBOSE`` set, not 0)."""
    return os.environ.get(RAY_VERBOSE_ENV, "").strip() not in ("", "0")


def _ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("the cluster engine needs Ray: pip install 'agentloop[cluster]' "
                          "(or pip install 'ray[default]')") from exc
    return ray


def connect(address: str | None = None, **init_kwargs: Any) -> Any:
    """Join the Ray cluster at ``address`` (or start a local one with ``None``); return the
    context ``ray.init`` gives. Already connected: returns the current runtime context.

    ``"ray://host:10001"`` connects through Ray Client, ``"host:6379"`` / ``"auto"`` as a driver
    on a cluster node. ``init_kwargs`` go to ``ray.init`` (e.g. ``runtime_env``). Unless
    :func:`ray_verbose`, Ray prints only its errors here and the actors' output stays in
    Ray's log files (``log_to_driver=False``).
    """
    ray = _ray()
    if ray.is_initialized():
        return ray.get_runtime_context()
    verbose = ray_verbose()
    if address in (None, "local"):
        init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("log_to_driver", verbose)
    if not (address or "").startswith("ray://"):
        if not verbose:
            init_kwargs.setdefault("logging_level", logging.ERROR)
        return ray.init(address=address, **init_kwargs)
    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            return ray.init(address=address, **init_kwargs)
        except ConnectionError as exc:
            # The Ray Client proxy starts a server process per driver; on a busy node that start
            # fails now and then ("Starting Ray client server failed"), and a new one usually works.
            if attempt == CLIENT_CONNECT_ATTEMPTS:
                raise ConfigError(f"could not connect to the Ray cluster at {address!r} "
                                  f"after {attempt} attempts: {exc}") from exc
            log.warning("Ray Client connection to %r failed (attempt %d of %d), retrying: %s",
                        address, attempt, CLIENT_CONNECT_ATTEMPTS, exc)
            time.sleep(CLIENT_CONNECT_BACKOFF_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover

