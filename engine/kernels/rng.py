"""A counter-based random stream: uniform numbers keyed by (seed, agent id, tick, stream).

Each number is a pure function of its key (SplitMix64's finaliser over a mixed key), so a draw
does not depend on how agents are split across threads or workers, nor on draw order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def uniform(seed: int, agent: int, tick: int, stream: int) -> float:
    """A uniform float64 in [0, 1) for this key (53 random bits)."""
    z = _mix(np.uint64(seed) + _GOLDEN)
    z = _mix(z ^ (np.uint64(agent) * _GOLDEN + _M1))
    z = _mix(z ^ (np.uint64(tick) * _M1 + _M2))
    z = _mix(z ^ (np.uint64(stream) * _M2 + _GOLDEN))
    return float(z >> _S11) * _TO_UNIT


@njit(cache=True)
def uniforms(seed: int, agent_ids: np.ndarray, tick: int, stream: int, out: np.ndarray) -> None:
    """Fill ``out[i]`` with ``uniform(seed, agent_ids[i], tick, stream)``."""
    for i in range(agent_ids.shape[0]):
        out[i] = uniform(seed, agent_ids[i], tick, stream)
