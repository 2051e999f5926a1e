"""A small population's step in one compiled call: its arrays, scratch and kernel config behind
one reference (:class:`StepRowsRef`), and the entry :func:`packed_kernel` builds per walk.

Handing the step its 17 arguments cost about 4 us a call (Numba types every array, tuple and
namedtuple each time); a structref is typed as one object. The entry also checks the
observations' range, so a caller whose observations are already int64, C-contiguous and of the
right shape makes one call per step.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit
from numba.core import types
from numba.experimental import structref

from engine.kernels.numba.kernel_model import unpack
from engine.kernels.numba.step import (
    KernelConfig,
    claim_scratch_row,
    first_bad_observation,
    step_walk_block,
)

_FIELDS = ["kc", "agent_ids", "qs", "prev_action", "started", "q_pi", "G", "actions",
           "fscratch", "iscratch", "sizes", "seed"]


@structref.register
class StepRowsType(types.StructRef):
    """Numba type of :class:`StepRowsRef`."""

    def preprocess_fields(self, fields):  # noqa: ANN001, ANN201
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class StepRowsRef(structref.StructRefProxy):
    """A population's per-agent arrays, scratch, sizes, seed and kernel config (build with
    :func:`step_rows_ref`; the arrays are shared, not copied)."""


structref.define_proxy(StepRowsRef, StepRowsType, _FIELDS)


def step_rows_ref(kc: KernelConfig, agent_ids: np.ndarray, qs: np.ndarray,
                  prev_action: np.ndarray, started: np.ndarray, q_pi: np.ndarray,
                  G: np.ndarray, actions: np.ndarray, fscratch: np.ndarray,
                  iscratch: np.ndarray, sizes: tuple[int, ...], seed: int) -> StepRowsRef:
    """The population's arrays behind one reference, for :func:`packed_kernel`'s entry."""
    return _rows_ref_of(kc, agent_ids, qs, prev_action, started, q_pi, G, actions, fscratch,
                        iscratch, sizes, np.int64(seed))


@njit(cache=True)
def _rows_ref_of(kc, agent_ids, qs, prev_action, started, q_pi, G, actions, fscratch,
                 iscratch, sizes, seed):
    """Compiled and cached: the proxy's own constructor compiles anew in every process."""
    return StepRowsRef(kc, agent_ids, qs, prev_action, started, q_pi, G, actions, fscratch,
                       iscratch, sizes, seed)


@functools.cache
def packed_kernel(walk: int):  # noqa: ANN201
    """``step(kref, rows, obs, tick) -> int`` for models taking the walk ``walk``: the first
    bad observation's flat index (nothing stepped), or -1 after one serial step of every
    agent of ``rows`` (a :class:`StepRowsRef`), with the first scratch row."""

    @njit(cache=True)
    def step_packed(kref, rows, obs, tick):
        km = unpack(kref)
        bad = first_bad_observation(obs, km.num_obs)
        if bad >= 0:
            return bad
        claim_scratch_row(rows.fscratch[0], rows.iscratch[0], 1)
        kc = rows.kc
        step_walk_block(walk, km, kc, 0, obs.shape[0], rows.agent_ids, obs, rows.qs,
                        rows.prev_action, rows.started, rows.q_pi, rows.G, rows.actions,
                        rows.seed, tick, rows.fscratch[0], rows.iscratch[0], rows.sizes,
                        kc.num_iter)
        return -1

    return step_packed
