"""Compiled stages of one agent's step (state inference, predicted states, policy posterior,
action marginal and selection), each the twin of a stage of ``engine.kernels.reference``.

Beliefs are flat over factors (``km.state_offset``); every intermediate is float64.

The stages the step calls per agent are compiled without reference counting (``_nrt=False``):
they allocate nothing (``docs/architecture.md``, "One compiled step per walk").
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
def apply_B_dependent(km, f, u, src, src_base, dst, dst_off):
    """dst[dst_off:...] = B[f][..., u] contracted with the marginals, in ``src[src_base:]``
    (beliefs flat over factors), of the factors in ``B_factor_list[f]`` (pymdp 1.x's
    mean-field ``B_dependencies``)."""
    S = km.num_states[f]
    K = (km.B_offset[f + 1] - km.B_offset[f]) // (km.num_controls[f] * S)
    base = km.B_offset[f] + u * S * K
    for r in range(S):
        dst[dst_off + r] = 0.0
    n_deps = 0
    while n_deps < km.B_deps.shape[1] and km.B_deps[f, n_deps] >= 0:
        n_deps += 1
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


@njit(cache=True)
def likelihood(km, A_flat, obs_row, j):
    """prod_m A_m[o_m, joint state j]."""
    like = 1.0
    for m in range(km.num_obs.shape[0]):
        like *= A_flat[km.A_offset[m] + obs_row[m] * km.A_cols[m] + km.jidx[m, j]]
    return like


@njit(cache=True, inline="always")
def log_likelihood(km, A_flat, obs_row, j):
    """ln p(o | joint state j): ``ln(prod_m A_m + 1e-16)`` (pymdp 0.0.7.1), or
    ``sum_m max(ln A_m, ln_floor)`` when the layout sets a floor (pymdp 1.x)."""
    floor = km.ln_floor[0]
    if floor == 0.0:
        return np.log(likelihood(km, A_flat, obs_row, j) + EPS)
    total = 0.0
    for m in range(km.num_obs.shape[0]):
        total += log_floored(A_flat[km.A_offset[m] + obs_row[m] * km.A_cols[m] + km.jidx[m, j]],
                             floor)
    return total


@njit(cache=True, inline="always")
def log_floored(x, floor):
    """pymdp 1.x's ``log_stable``: ``max(ln x, floor)`` (``floor`` = ln MINVAL)."""
    return max(np.log(x), floor) if x > 0.0 else floor


@njit(cache=True)
def joint_into(km, q, q_off, out):
    """out[j] = prod_f q[f][idx_f(j)] over the joint state space (factor 0 slowest), expanded
    factor by factor in place: the same products in the same order, without divisions."""
    n = 1
    out[0] = 1.0
    for f in range(km.num_states.shape[0]):
        S = km.num_states[f]
        base = q_off + km.state_offset[f]
        for i in range(n - 1, -1, -1):
            v = out[i]
            for s in range(S - 1, -1, -1):
                out[i * S + s] = v * q[base + s]
        n *= S


@njit(cache=True)
def softmax_into(x, out, lo, hi):
    mx = x[lo]
    for s in range(lo + 1, hi):
        if x[s] > mx:
            mx = x[s]
    total = 0.0
    for s in range(lo, hi):
        e = np.exp(x[s] - mx)
        out[s] = e
        total += e
    for s in range(lo, hi):
        out[s] /= total


@njit(cache=True)
def factor_entropy_terms(km, q, lnprior):
    """sum_f [q_f . ln(q_f + e) - q_f . ln p_f] (pymdp's calc_free_energy without accuracy)."""
    total = 0.0
    for s in range(km.state_offset[-1]):
        total += q[s] * np.log(q[s] + EPS) - q[s] * lnprior[s]
    return total


# ------------------------------------------------------------------------------------ stages
@njit(cache=True, inline="always")
def predict_states(km, actions, src, src_off, dst, dst_off):
    """Twin of reference.transition_prior: every factor's ``B[f][:, :, actions[f]] @ q_f``.

    ``src[src_off:]`` and ``dst[dst_off:]`` are beliefs flat over factors."""
    for f in range(km.num_states.shape[0]):
        apply_B(km, f, actions[f], src, src_off + km.state_offset[f], dst,
                dst_off + km.state_offset[f])


@njit(cache=True, _nrt=False)
def infer_states_one(km, kc, A_flat, obs_row, prior, post, lnprior, qL, qtmp, lnL, qj,
                     num_iter):
    """Twin of reference.infer_states: pymdp's run_vanilla_fpi for one agent, prior -> post.

    ``A_flat`` is the model's compact A (``km.A_flat``) or one agent's learnt copy.
    """
    n_factors = km.num_states.shape[0]
    floor = km.ln_floor[0]
    if n_factors == 1 and floor != 0.0:
        # pymdp 1.x: softmax(sum_m ln max(A_m, MINVAL) + ln max(prior, MINVAL))
        S = km.num_states[0]
        for s in range(S):
            lnL[s] = log_floored(prior[s], floor) + log_likelihood(km, A_flat, obs_row, s)
        softmax_into(lnL, post, 0, S)
        return
    if n_factors == 1:
        # lnL doubles as the likelihood buffer: L[s] = prod_m A_m[o_m, s]
        S = km.num_states[0]
        like = lnL
        for s in range(S):
            like[s] = 1.0
        for m in range(km.num_obs.shape[0]):
            row = km.A_offset[m] + obs_row[m] * km.A_cols[m]
            if km.jidx_identity[m]:
                for s in range(S):
                    like[s] *= A_flat[row + s]
            else:
                for s in range(S):
                    like[s] *= A_flat[row + km.jidx[m, s]]
        # four running sums: a single one is a chain of S dependent additions
        t0 = t1 = t2 = t3 = 0.0
        s = 0
        while s + 4 <= S:
            v0 = (like[s] + EPS) * (prior[s] + EPS)
            v1 = (like[s + 1] + EPS) * (prior[s + 1] + EPS)
            v2 = (like[s + 2] + EPS) * (prior[s + 2] + EPS)
            v3 = (like[s + 3] + EPS) * (prior[s + 3] + EPS)
            post[s], post[s + 1], post[s + 2], post[s + 3] = v0, v1, v2, v3
            t0 += v0
            t1 += v1
            t2 += v2
            t3 += v3
            s += 4
        while s < S:
            v0 = (like[s] + EPS) * (prior[s] + EPS)
            post[s] = v0
            t0 += v0
            s += 1
        total = (t0 + t1) + (t2 + t3)
        inv = 1.0 / total
        for s in range(S):
            post[s] = post[s] * inv
        return
    n_joint = lnL.shape[0]
    for j in range(n_joint):
        lnL[j] = log_likelihood(km, A_flat, obs_row, j)
    s_tot = km.state_offset[-1]
    for f in range(n_factors):
        for s in range(km.state_offset[f], km.state_offset[f + 1]):
            post[s] = 1.0 / km.num_states[f]
    for s in range(s_tot):
        lnprior[s] = np.log(prior[s] + EPS) if floor == 0.0 else log_floored(prior[s], floor)
    prev_vfe = factor_entropy_terms(km, post, lnprior)
    dF = kc.dF
    it = 0
    while it < num_iter and dF >= kc.dF_tol:
        # Jacobi sweep: every factor's update reads the marginals of the previous sweep
        for s in range(s_tot):
            qL[s] = 0.0
        for j in range(n_joint):
            for f in range(n_factors):
                w = lnL[j]
                for g in range(n_factors):
                    if g != f:
                        w *= post[km.joint_slot[g, j]]
                qL[km.joint_slot[f, j]] += w
        for s in range(s_tot):
            qL[s] += lnprior[s]
        for f in range(n_factors):
            softmax_into(qL, qtmp, km.state_offset[f], km.state_offset[f + 1])
        for s in range(s_tot):
            post[s] = qtmp[s]
        joint_into(km, post, 0, qj)
        accuracy = 0.0
        for j in range(n_joint):
            accuracy += lnL[j] * qj[j]
        vfe = factor_entropy_terms(km, post, lnprior) - accuracy
        dF = abs(prev_vfe - vfe)
        prev_vfe = vfe
        it += 1


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
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
