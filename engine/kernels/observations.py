"""The check every step runs on its observations before any agent's state changes."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import ObservationError
from engine.kernels.numba.step import first_bad_observation


def check_observations(obs: np.ndarray, n: int, num_obs: np.ndarray) -> np.ndarray:
    """Raise :class:`ObservationError` naming the agent and modality of a bad observation.

    ``n`` is the expected number of rows and ``num_obs`` the outcome count of each modality.
    Returns the observations as a writable C-contiguous int64 array (``obs`` itself when it is
    one): the one array type the kernels are compiled for, as any other dtype, memory layout or
    a read-only array would make Numba compile a new specialisation (tens of seconds).
    """
    n_mod = len(num_obs)
    check_array(obs, np.ndarray, n, n_mod)
    given = obs
    if not (obs.dtype == np.int64 and obs.flags.c_contiguous and obs.flags.writeable):
        # values >= 2**63 (uint64) wrap to negatives: still out of range below
        obs = np.array(obs, dtype=np.int64, order="C")
    bad = first_bad_observation(obs, num_obs)
    if bad >= 0:
        agent, m = divmod(int(bad), n_mod)
        raise ObservationError(
            f"observation {int(given[agent, m])} of agent {agent}, modality {m} is out of "
            f"range 0..{int(num_obs[m]) - 1}; no agent's beliefs were changed")
    return obs


def check_array(obs: Any, array_type: type, n: int, n_mod: int) -> None:
    """Raise :class:`ObservationError` unless ``obs`` is an integer ``array_type`` (NumPy's or
    CuPy's ndarray) of shape ``(n, n_mod)``."""
    if not isinstance(obs, array_type):
        raise ObservationError(f"observations must be a NumPy integer array of shape "
                               f"({n}, {n_mod}), got {type(obs).__name__}")
    if obs.dtype == np.bool_ or not np.issubdtype(obs.dtype, np.integer):
        raise ObservationError(f"observations must have an integer dtype, got {obs.dtype}")
    if obs.shape != (n, n_mod):
        raise ObservationError(f"observations must have shape ({n}, {n_mod}) "
                               f"(agents, modalities), got {obs.shape}")
