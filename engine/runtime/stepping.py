"""The one kernel call of a chunk of agents, with or without the population's own parameters
(the worker's direct path and the journal's staged path both step through it)."""

from __future__ import annotations

import numba
import numpy as np

from engine.kernels import cpu_learning
from engine.kernels.numba import step as numba_step
from engine.runtime.shared_state import SharedState


def step_rows(state: SharedState, kc: numba_step.KernelConfig, lo: int, hi: int,
              qs: np.ndarray, prev_action: np.ndarray, started: np.ndarray, q_pi: np.ndarray,
              G: np.ndarray, actions: np.ndarray, params: cpu_learning.KernelParams | None,
              tick: int, fscratch: np.ndarray, iscratch: np.ndarray, token: int) -> None:
    """Step agents ``lo..hi`` of ``state`` (observations and ids from the population's
    arrays) into the given rows; ``params``: a learning population's parameters for these
    rows (``ChunkParams.rows``), None for the shared model's. ``token``: the kernels' memo
    token (``worker.memo_token``)."""
    spec = state.spec
    if params is None:
        serial = numba_step.runs_serial(hi - lo, numba.get_num_threads())
        step = state.step_serial if serial else state.step_agents
        step(state.kref, kc, state.agent_ids[lo:hi], state.obs[lo:hi], qs, prev_action, started,
             q_pi, G, actions, spec.seed, tick, fscratch, iscratch, spec.scratch_sizes,
             kc.num_iter, token)
    else:
        cpu_learning.step_agents_params(
            state.km, kc, params, state.agent_ids[lo:hi], state.obs[lo:hi], qs, prev_action,
            started, q_pi, G, actions, spec.seed, tick, fscratch, iscratch,
            spec.scratch_sizes, kc.num_iter)
