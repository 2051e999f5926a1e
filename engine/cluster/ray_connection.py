"""Joining a Ray cluster: the ``ray`` module on demand, and :func:`connect`."""

from __future__ import annotations

import time
import warnings
from typing import Any

from engine.errors import ConfigError

#: tries at joining a cluster through Ray Client (ray://) before giving up, and the back-off
CLIENT_CONNECT_ATTEMPTS = 3
CLIENT_CONNECT_BACKOFF_S = 1.0


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
    on a cluster node. ``init_kwargs`` go to ``ray.init`` (e.g. ``runtime_env``).
    """
    ray = _ray()
    if ray.is_initialized():
        return ray.get_runtime_context()
    if address in (None, "local"):
        init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("log_to_driver", True)
    if not (address or "").startswith("ray://"):
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
            warnings.warn(f"Ray Client connection to {address!r} failed (attempt {attempt} of "
                          f"{CLIENT_CONNECT_ATTEMPTS}), retrying: {exc}", stacklevel=2)
            time.sleep(CLIENT_CONNECT_BACKOFF_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover

