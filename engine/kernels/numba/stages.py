"""Compiled stages of one agent's step (predicted states, policy posterior,
action marginal and selection), each the twin of a stage of ``engine.kernels.reference``.

Beliefs are flat over factors (``km.state_offset``); every intermediate is float64.

The stages the step calls per agent are compiled without reference counting (``_nrt=False``):
they allocate nothing (``docs/architecture.md``, "One compiled step per walk").
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.vector_math import vexp, vlog
from engine.kernels.rng import uniform
from engine.model.constants import EPS, TIE_TOL


# ------------------------------------------------------------------------------------ helpers
@njit(cache=True, inline="always")
def apply_B(km, f, u, src, src_off, dst, dst_off):
    """dst[dst_off:...] = B[f][:, :, u] @ src[src_off:...].

    A deterministic move (one non-zero per column) is scattered column by column: each row
    receives its terms in column order, as the row-wise sum adds them, so the result is the
    same number, without the row loop's branches."""
    S = km.num_states[f]
    if km.B_sparse[f] and km.B_det[f, u]:
        for r in range(S):
            dst[dst_off + r] = 0.0
        for c in range(S):
            dst[dst_off + km.Bd_row[f, u, c]] += km.Bd_val[f, u, c] * src[src_off + c]
    elif km.B_sparse[f]:
        for r in range(S):
            acc = 0.0
            for k in range(km.Bs_rowptr[f, u, r], km.Bs_rowptr[f, u, r + 1]):
                acc += km.Bs_val[k] * src[src_off + km.Bs_col[k]]
            dst[dst_off + r] = acc
    elif km.B_deps[f, 0] != f or (km.B_deps.shape[1] > 1 and km.B_deps[f, 1] >= 0):
        apply_B_dependent(km, f, u, src, src_off - km.state_offset[f], dst, dst_off)
    else:
        base = km.B_offset[f] + u * S * S
        for r in range(S):
            acc = 0.0
            row = base + r * S
            for c in range(S):
                acc += km.Bt_flat[row + c] * src[src_off + c]
            dst[dst_off + r] = acc


@njit(cache=True, inline="always")
def n_listed(lists, row):
    """How many entries of ``lists[row]`` (a factor list padded with -1) are factors."""
    k = 0
    while k < lists.shape[1] and lists[row, k] >= 0:
        k += 1
    return k


@njit(cache=True, inline="always")
def apply_B_dependent(km, f, u, src, src_base, dst, dst_off):
    """dst[dst_off:...] = B[f][..., u] contracted with the marginals, in ``src[src_base:]``
    (beliefs flat over factors), of the factors in ``B_factor_list[f]`` (pymdp 1.x's
    mean-field ``B_dependencies``)."""
    S = km.num_states[f]
    K = (km.B_offset[f + 1] - km.B_offset[f]) // (km.num_controls[f] * S)
    base = km.B_offset[f] + u * S * K
    for r in range(S):
        dst[dst_off + r] = 0.0
    n_deps = n_listed(km.B_deps, f)
    for c in range(K):
        rem = c
        w = 1.0
        for k in range(n_deps - 1, -1, -1):
            d = km.B_deps[f, k]
            digit = rem % km.num_states[d]
            rem //= km.num_states[d]
            w *= src[src_base + km.state_offset[d] + digit]
        if w != 0.0:
            for r in range(S):
                dst[dst_off + r] += km.Bt_flat[base + r * K + c] * w


@njit(cache=True, error_model="numpy")
def likelihood(km, A_flat, obs_row, j):
    """prod_m A_m[o_m, joint state j]."""
    like = 1.0
    for m in range(km.num_obs.shape[0]):
        like *= A_flat[km.A_offset[m] + obs_row[m] * km.A_cols[m] + km.jidx[m, j]]
    return like


@njit(cache=True, inline="always")
def log_floored(x, floor):
    """pymdp 1.x's ``log_stable``: ``max(ln x, floor)`` (``floor`` = ln MINVAL)."""
    return max(np.log(x), floor) if x > 0.0 else floor


@njit(cache=True, inline="always")
def expand_into(km, factors, listed, first, last, q, q_off, out, o0):
    """``out[o0:o0 + n]`` = the joint belief of factors ``first .. last - 1`` (the entries
    ``factors[first:last]`` when ``listed``) from the flat marginals ``q[q_off:]``, row-major
    with the first slowest, expanded factor by factor in place: the same products in the same
    order, without divisions. Returns n."""
    n = 1
    out[o0] = 1.0
    for i in range(first, last):
        f = factors[i] if listed else i
        S = km.num_states[f]
        base = q_off + km.state_offset[f]
        for a in range(n - 1, -1, -1):
            v = out[o0 + a]
            for s in range(S - 1, -1, -1):
                out[o0 + a * S + s] = v * q[base + s]
        n *= S
    return n


@njit(cache=True, error_model="numpy")
def joint_into(km, q, q_off, out):
    """out[j] = prod_f q[f][idx_f(j)] over the joint state space (factor 0 slowest)."""
    expand_into(km, km.num_states, False, 0, km.num_states.shape[0], q, q_off, out, 0)


@njit(cache=True, error_model="numpy")
def softmax_into(x, out, lo, hi):
    mx = x[lo]
    for s in range(lo + 1, hi):
        if x[s] > mx:
            mx = x[s]
    for s in range(lo, hi):                   # apart from the sum, so that it vectorises
        out[s] = vexp(x[s] - mx)
    total = 0.0
    for s in range(lo, hi):
        total += out[s]
    for s in range(lo, hi):
        out[s] /= total


@njit(cache=True, error_model="numpy")
def factor_entropy_terms(km, q, lnprior):
    """sum_f [q_f . ln(q_f + e) - q_f . ln p_f] (pymdp's calc_free_energy without accuracy)."""
    total = 0.0
    for s in range(km.state_offset[-1]):
        total += q[s] * vlog(q[s] + EPS) - q[s] * lnprior[s]
    return total


# ------------------------------------------------------------------------------------ stages
@njit(cache=True, inline="always")
def predict_states(km, actions, src, src_off, dst, dst_off):
    """Twin of reference.transition_prior: every factor's ``B[f][:, :, actions[f]] @ q_f``.

    ``src[src_off:]`` and ``dst[dst_off:]`` are beliefs flat over factors."""
    for f in range(km.num_states.shape[0]):
        apply_B(km, f, actions[f], src, src_off + km.state_offset[f], dst,
                dst_off + km.state_offset[f])


@njit(cache=True, _nrt=False, error_model="numpy")
def policy_posterior(km, kc, G, qpi):
    """Twin of reference.policy_posterior: q(pi) = softmax(gamma G + ln E)."""
    n = G.shape[0]
    for p in range(n):
        qpi[p] = G[p] * kc.gamma + km.lnE[p]
    softmax_into(qpi, qpi, 0, n)


@njit(cache=True)
def draw(p, n, u):
    acc = 0.0
    for k in range(n - 1):
        acc += p[k]
        if u < acc:
            return k
    return n - 1


@njit(cache=True, inline="always")
def action_marginal(km, qpi, f, marg):
    """Twin of reference.action_marginals: P(u_f) into ``marg[:U_f]``, from each policy's
    first action, normalised."""
    n_u = km.num_controls[f]
    for u in range(n_u):
        marg[u] = 0.0
    for p in range(qpi.shape[0]):
        marg[km.first_action[p, f]] += qpi[p]
    total = 0.0
    for u in range(n_u):
        total += marg[u]
    for u in range(n_u):
        marg[u] /= total


@njit(cache=True, inline="always")
def first_max(p, n):
    """The lowest index of ``p[:n]`` whose value is within ``TIE_TOL`` of the largest."""
    top = p[0]
    for k in range(1, n):
        top = max(top, p[k])
    for k in range(n):
        if p[k] >= top - TIE_TOL:
            return k
    return 0


@njit(cache=True, _nrt=False, error_model="numpy")
def select_action_one(km, kc, qpi, marg, seed, agent_id, tick, out_row):
    """Twin of reference.select_actions: marginal (or full-policy) action selection,
    deterministic or stochastic."""
    n_factors = km.num_states.shape[0]
    n_pol = qpi.shape[0]
    if kc.full_sampling:
        if kc.stochastic:
            for p in range(n_pol):
                marg[p] = np.log(qpi[p] + EPS) * kc.alpha
            softmax_into(marg, marg, 0, n_pol)
            best = draw(marg, n_pol, uniform(seed, agent_id, tick, 0))
        else:
            best = first_max(qpi, n_pol)
        for f in range(n_factors):
            out_row[f] = km.first_action[best, f]
        return
    for f in range(n_factors):
        n_u = km.num_controls[f]
        action_marginal(km, qpi, f, marg)
        if kc.stochastic:
            for u in range(n_u):
                marg[u] = np.log(marg[u] + EPS) * kc.alpha
            softmax_into(marg, marg, 0, n_u)
            out_row[f] = draw(marg, n_u, uniform(seed, agent_id, tick, f))
        else:
            out_row[f] = first_max(marg, n_u)
