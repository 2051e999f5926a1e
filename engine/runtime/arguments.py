"""Checks of the engines' call arguments, made before any state changes: each raises
:class:`ConfigError` naming the call, the argument and what it got."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from engine.errors import ConfigError
from engine.runtime.degrade import FULL, MAX_LEVEL

#: seeds and ticks key the random stream as signed 64-bit ints in the kernels
INT64_MAX = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def checked_budget(budget_s: Any, where: str) -> float | None:
    """A tick's budget in seconds: None (no deadline) or a finite number >= 0."""
    if budget_s is None:
        return None
    if not _is_real(budget_s):
        raise ConfigError(f"{where}: budget_s must be a number of seconds or None, got "
                          f"{budget_s!r}")
    value = float(budget_s)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: budget_s must be a finite number >= 0 (None for no "
                          f"deadline), got {budget_s!r}")
    return value


def checked_level(level: Any, where: str) -> int | None:
    """A forced degradation level: None (the controller's) or an int in 0..MAX_LEVEL."""
    if level is None:
        return None
    if not _is_int(level):
        raise ConfigError(f"{where}: level must be an int in {FULL}..{MAX_LEVEL} or None, "
                          f"got {level!r}")
    if not FULL <= level <= MAX_LEVEL:
        raise ConfigError(f"{where}: level must be in {FULL}..{MAX_LEVEL}, got {level}")
    return int(level)


def checked_seed(seed: Any, where: str) -> int:
    """A random seed: an int in 0..2**63-1."""
    if not _is_int(seed) or not 0 <= seed <= INT64_MAX:
        raise ConfigError(f"{where}: seed must be an int in 0..2**63-1, got {seed!r}")
    return int(seed)


def checked_tick(tick: Any, where: str) -> int:
    """A tick number: an int in 0..2**63-1."""
    if not _is_int(tick) or not 0 <= tick <= INT64_MAX:
        raise ConfigError(f"{where}: tick must be an int in 0..2**63-1, got {tick!r}")
    return int(tick)


def checked_rate(hz: Any, ticks: Any, on_tick: Callable[..., Any] | None,
                 where: str) -> tuple[float, int]:
    """A fixed-rate run's rate (finite, > 0), tick count (int >= 0) and callback."""
    if not _is_real(hz) or not math.isfinite(float(hz)) or hz <= 0:
        raise ConfigError(f"{where}: hz must be a finite number > 0, got {hz!r}")
    if not _is_int(ticks) or ticks < 0:
        raise ConfigError(f"{where}: ticks must be an int >= 0, got {ticks!r}")
    if on_tick is not None and not callable(on_tick):
        raise ConfigError(f"{where}: on_tick must be callable or None, got {on_tick!r}")
    return float(hz), int(ticks)
