"""World names for the command line and replay: ``make_world`` by name, ``world_from_config``
from a world's own ``config()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from engine.errors import WorldError
from engine.runtime.sizing import ModelShape
from world.base import World
from world.foraging import ForagingWorld
from world.grid import GridWorld

#: World constructors by the ``name`` their ``config()`` reports.
WORLDS: dict[str, Callable[..., World]] = {"grid": GridWorld, "foraging": ForagingWorld}


def _constructor(name: str) -> Callable[..., World]:
    try:
        return WORLDS[name]
    except (KeyError, TypeError):
        raise WorldError(f"unknown world {name!r}; choose from {', '.join(WORLDS)}") from None


def make_world(name: str, size: int, n_agents: int, **params: Any) -> World:
    """A world by name (``"grid"``, ``"foraging"``); ``params`` are its keyword parameters."""
    return _constructor(name)(size=size, n_agents=n_agents, **params)


def model_shape(name: str, size: int) -> ModelShape:
    """The sizes of the model the world ``name`` of side ``size`` (default parameters) gives
    its agents, without building the world (to refuse one too large for the machine first)."""
    return _constructor(name).model_shape(size)  # type: ignore[attr-defined]


def world_from_config(config: dict[str, Any], n_agents: int | None = None) -> World:
    """Rebuild a world from its ``config()`` (with ``n_agents`` agents, default the config's).

    WorldError for an unknown name or a parameter the world does not take.
    """
    if "name" not in config:
        raise WorldError("world config has no 'name'")
    params = {k: v for k, v in config.items() if k != "name"}
    ctor = _constructor(config["name"])
    accepted = inspect.signature(ctor).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise WorldError(f"world config for {config['name']!r} has unknown parameters "
                         f"{', '.join(unknown)}")
    if n_agents is not None:
        params["n_agents"] = n_agents
    return ctor(**params)
