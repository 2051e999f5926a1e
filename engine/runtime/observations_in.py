"""The master's one pass over a tick's observations: checked while copied into shared memory."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit


@njit(cache=True)
def copy_in_range(src: np.ndarray, dst: np.ndarray, num_obs: np.ndarray) -> bool:
    """Copy ``src`` (int64 ``(n, M)``) into ``dst``; whether every entry was within
    ``0..num_obs[m] - 1`` (no early exit: the loop has no branch, so it runs at copy speed;
    the caller locates a bad entry with the full check)."""
    ok = True
    for i in range(src.shape[0]):
        for m in range(src.shape[1]):
            o = src[i, m]
            ok &= (o >= 0) & (o < num_obs[m])
            dst[i, m] = o
    return ok


def copied_observations(obs: Any, dst: np.ndarray, num_obs: np.ndarray,
                        single: bool) -> list[np.ndarray] | None:
    """One population's int64 C-contiguous observations, checked while copied into ``dst``
    (its shared-memory buffer) in one pass; None when ``obs`` is anything else or out of
    range: the engine's full check then names the entry (the buffer is overwritten every
    tick; no agent's state has changed)."""
    if not (single and type(obs) is np.ndarray and obs.dtype == np.int64
            and obs.flags.c_contiguous and obs.shape == dst.shape):
        return None
    return [obs] if copy_in_range(obs, dst, num_obs) else None
