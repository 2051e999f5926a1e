"""pymdp 1.x's node value from factor marginals (the layout's ``F_*`` tables,
``engine.model.factored_tables``): per modality, its own factors' joint belief, the predicted
outcome, the utility and the information gain; no joint belief over every factor."""

from __future__ import annotations

from numba import njit

from engine.kernels.numba.stages import expand_into, n_listed
from engine.kernels.numba.vector_math import vlog
from engine.model.constants import EPS


@njit(cache=True, inline="always")
def modality_belief(km, m, q, q_off, w):
    """``w[:K_m]`` = the joint belief of modality ``m``'s factors (``A_factor_list`` order, the
    first slowest) from the flat marginals ``q[q_off:]``."""
    expand_into(km, km.F_deps[m], True, 0, n_listed(km.F_deps, m), q, q_off, w, 0)


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def predicted_outcome(km, m, w, qo):
    """``qo[:O_m] = A_m w`` (dense rows, or the row lists of a sparse modality)."""
    K = km.A_cols[m]
    r0 = km.obs_offset[m]
    if km.F_sparse[m]:
        for o in range(km.num_obs[m]):
            acc = 0.0
            for p in range(km.F_ptr[r0 + o], km.F_ptr[r0 + o + 1]):
                acc += km.F_val[p] * w[km.F_col[p]]
            qo[o] = acc
        return
    A = km.A_flat[km.A_offset[m]:km.A_offset[m + 1]]
    for o in range(km.num_obs[m]):
        acc = 0.0
        b = o * K
        for c in range(K):
            acc += A[b + c] * w[c]
        qo[o] = acc


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def outcome_terms(km, m, d, qo, use_utility, use_gain):
    """The utility of ``qo[:O_m]`` at step ``d`` and minus its entropy, as asked."""
    value = 0.0
    r0 = km.obs_offset[m]
    for o in range(km.num_obs[m]):
        v = qo[o]
        if use_utility:
            value += v * km.lnC[d, r0 + o]
        if use_gain:
            value -= v * vlog(v + EPS)
    return value


@njit(cache=True, _nrt=False, error_model="numpy")
def factored_value(km, kc, q, q_off, d, qo, w):
    """Twin-level node value of reference.expected_free_energy (pymdp 1.x): the utility plus
    the information gain of the node whose factor marginals are ``q[q_off:]`` at step ``d``."""
    value = 0.0
    if not (kc.use_utility or kc.use_states_info_gain):
        return value
    for m in range(km.num_obs.shape[0]):
        modality_belief(km, m, q, q_off, w)
        if kc.use_states_info_gain:
            a0 = km.F_amb_offset[m]
            for c in range(km.A_cols[m]):
                value += w[c] * km.F_amb[a0 + c]
        predicted_outcome(km, m, w, qo)
        value += outcome_terms(km, m, d, qo, kc.use_utility, kc.use_states_info_gain)
    return value
