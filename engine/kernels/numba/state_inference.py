"""Compiled state inference of one agent (pymdp's fixed-point iteration), the twin of
``reference.infer_states``.

Several factors: each sweep's message to a factor contracts a log-likelihood tensor with the
other factors' marginals (:func:`add_messages`): pymdp 0.0.7.1's joint
``ln(prod_m A_m + 1e-16)`` over every factor, or pymdp 1.x's precomputed tables of the
modalities over each group of factors (``engine.model.likelihood_groups``)
(``docs/architecture.md``, "Fixed-point sweeps by contraction").
"""

from __future__ import annotations

from numba import njit

from engine.kernels.numba.stages import (
    expand_into,
    factor_entropy_terms,
    likelihood,
    log_floored,
    n_listed,
    softmax_into,
)
from engine.kernels.numba.vector_math import vlog
from engine.model.constants import EPS


@njit(cache=True, inline="always")
def axis_factor(deps, i, listed):
    """The factor of a tensor's axis ``i``: ``deps[i]``, or ``i`` itself for the joint tensor."""
    return deps[i] if listed else i


@njit(cache=True, inline="always")
def add_message(km, T, t0, deps, listed, k, t, q, w, out):
    """``out[factor of axis t] += T contracted with q over every other axis``.

    ``T[t0:]`` is a row-major tensor over ``k`` axes, the factors ``deps[:k]`` when ``listed``,
    else every factor in order (the first slowest). ``w`` takes the weights of the axes after
    ``t``, then of those before it."""
    ft = axis_factor(deps, t, listed)
    d_t = km.num_states[ft]
    n_in = expand_into(km, deps, listed, t + 1, k, q, 0, w, 0)
    n_out = expand_into(km, deps, listed, 0, t, q, 0, w, n_in)
    ot = km.state_offset[ft]
    for a in range(n_out):
        wa = w[n_in + a]
        for s in range(d_t):
            base = t0 + (a * d_t + s) * n_in
            acc = 0.0
            for b in range(n_in):
                acc += T[base + b] * w[b]
            out[ot + s] += wa * acc


@njit(cache=True, _nrt=False, error_model="numpy")
def add_messages(km, T, t0, deps, listed, k, q, w, out):
    """Every axis's message from the tensor ``T[t0:]`` (as :func:`add_message`). Two axes
    take one pass over the tensor for both; with more, a factor with one state gets none
    (its marginal is 1 whatever the message)."""
    if k == 2:
        f0 = axis_factor(deps, 0, listed)
        f1 = axis_factor(deps, 1, listed)
        d0 = km.num_states[f0]
        d1 = km.num_states[f1]
        o0 = km.state_offset[f0]
        o1 = km.state_offset[f1]
        for a in range(d0):
            qa = q[o0 + a]
            base = t0 + a * d1
            acc = 0.0
            for b in range(d1):
                v = T[base + b]
                acc += v * q[o1 + b]
                out[o1 + b] += v * qa
            out[o0 + a] += acc
        return
    for t in range(k):
        if km.num_states[axis_factor(deps, t, listed)] > 1:
            add_message(km, T, t0, deps, listed, k, t, q, w, out)


@njit(cache=True, inline="always")
def _joint_messages(km, lnL, n_factors, q, w, out):
    """``out`` = every factor's message from the joint log-likelihood (pymdp 0.0.7.1)."""
    for s in range(km.state_offset[-1]):
        out[s] = 0.0
    add_messages(km, lnL, 0, km.num_states, False, n_factors, q, w, out)


@njit(cache=True, inline="always")
def _accuracy(km, lnL, q, messages):
    """``E_q[ln L]``: one factor's marginal against its message (the others contracted)."""
    for f in range(km.num_states.shape[0]):
        if km.num_states[f] > 1:
            acc = 0.0
            for s in range(km.state_offset[f], km.state_offset[f + 1]):
                acc += q[s] * messages[s]
            return acc
    return lnL[0]


@njit(cache=True, inline="always")
def group_row(km, g, obs_row):
    """Where group ``g``'s table for these observations starts in ``km.LL_flat``."""
    r = 0
    i = 0
    while i < km.LL_mods.shape[1] and km.LL_mods[g, i] >= 0:
        m = km.LL_mods[g, i]
        r = r * km.num_obs[m] + obs_row[m]
        i += 1
    return km.LL_offset[g] + r * km.LL_cols[g]


@njit(cache=True, _nrt=False, error_model="numpy")
def _sweeps_pymdp1(km, obs_row, prior, post, base, qL, qtmp, w, num_iter, floor):
    """pymdp 1.x's factorised fixed point: every sweep, each factor's message sums the
    tables of the modality groups that read it (``model.likelihood_groups``), contracted with
    the other factors' marginals. A group over one factor sends the same message every sweep:
    it is added to the log prior (``base``) once."""
    s_tot = km.state_offset[-1]
    for s in range(s_tot):
        base[s] = log_floored(prior[s], floor)
    n_groups = km.LL_cols.shape[0]
    for g in range(n_groups):
        if n_listed(km.LL_deps, g) == 1:
            row = group_row(km, g, obs_row)
            o = km.state_offset[km.LL_deps[g, 0]]
            for s in range(km.LL_cols[g]):
                base[o + s] += km.LL_flat[row + s]
    for _ in range(num_iter):
        for s in range(s_tot):
            qL[s] = base[s]
        for g in range(n_groups):
            k = n_listed(km.LL_deps, g)
            if k > 1:
                add_messages(km, km.LL_flat, group_row(km, g, obs_row), km.LL_deps[g], True,
                             k, post, w, qL)
        for f in range(km.num_states.shape[0]):
            softmax_into(qL, qtmp, km.state_offset[f], km.state_offset[f + 1])
        for s in range(s_tot):
            post[s] = qtmp[s]


@njit(cache=True, inline="always")
def _one_factor_pymdp1(km, obs_row, prior, post, lnL, floor):
    """pymdp 1.x, one factor: softmax(sum_m max(ln A_m, floor) + max(ln prior, floor))."""
    S = km.num_states[0]
    for s in range(S):
        lnL[s] = log_floored(prior[s], floor)
    for m in range(km.num_obs.shape[0]):
        row = km.A_offset[m] + obs_row[m] * km.A_cols[m]
        if km.jidx_identity[m]:
            for s in range(S):
                lnL[s] += km.lnA_flat[row + s]
        else:
            for s in range(S):
                lnL[s] += km.lnA_flat[row + km.jidx[m, s]]
    softmax_into(lnL, post, 0, S)


@njit(cache=True, inline="always")
def _one_factor_pymdp0(km, A_flat, obs_row, prior, post, like):
    """pymdp 0.0.7.1, one factor: the exact posterior (L + e)(prior + e), normalised."""
    S = km.num_states[0]
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


@njit(cache=True, _nrt=False, error_model="numpy")
def infer_states_one(km, kc, A_flat, obs_row, prior, post, lnprior, qL, qtmp, lnL, qj,
                     num_iter):
    """Twin of reference.infer_states: pymdp's run_vanilla_fpi for one agent, prior -> post.

    ``A_flat`` is the model's compact A (``km.A_flat``) or one agent's learnt copy (pymdp
    0.0.7.1 semantics only: pymdp 1.x's read the model's log tables). ``qj`` is scratch.
    """
    if km.num_states.shape[0] == 1:
        infer_states_one_factor(km, A_flat, obs_row, prior, post, lnL)
    else:
        infer_states_factors(km, kc, A_flat, obs_row, prior, post, lnprior, qL, qtmp, lnL, qj,
                             num_iter)


@njit(cache=True, _nrt=False, error_model="numpy")
def infer_states_one_factor(km, A_flat, obs_row, prior, post, lnL):
    """:func:`infer_states_one` for a model with one factor (exact in one step). The step of
    the one-factor walk calls it directly, so that its compile leaves the sweeps out."""
    floor = km.ln_floor[0]
    if floor != 0.0:
        _one_factor_pymdp1(km, obs_row, prior, post, lnL, floor)
    else:
        _one_factor_pymdp0(km, A_flat, obs_row, prior, post, lnL)


@njit(cache=True, _nrt=False, error_model="numpy")
def infer_states_factors(km, kc, A_flat, obs_row, prior, post, lnprior, qL, qtmp, lnL, qj,
                         num_iter):
    """:func:`infer_states_one` for a model with several factors: the fixed-point sweeps."""
    n_factors = km.num_states.shape[0]
    floor = km.ln_floor[0]
    s_tot = km.state_offset[-1]
    for f in range(n_factors):
        for s in range(km.state_offset[f], km.state_offset[f + 1]):
            post[s] = 1.0 / km.num_states[f]
    if floor != 0.0:
        _sweeps_pymdp1(km, obs_row, prior, post, lnprior, qL, qtmp, qj, num_iter, floor)
        return
    for j in range(lnL.shape[0]):
        lnL[j] = vlog(likelihood(km, A_flat, obs_row, j) + EPS)
    for s in range(s_tot):
        lnprior[s] = vlog(prior[s] + EPS)
    prev_vfe = factor_entropy_terms(km, post, lnprior)
    # qL holds the messages of the current marginals: the next sweep's input, and (dotted with
    # a marginal) the accuracy of the free energy that decides whether that sweep runs
    _joint_messages(km, lnL, n_factors, post, qj, qL)
    dF = kc.dF
    it = 0
    while it < num_iter and dF >= kc.dF_tol:
        # Jacobi sweep: every factor's update reads the marginals of the previous sweep
        for s in range(s_tot):
            qL[s] += lnprior[s]
        for f in range(n_factors):
            softmax_into(qL, qtmp, km.state_offset[f], km.state_offset[f + 1])
        for s in range(s_tot):
            post[s] = qtmp[s]
        _joint_messages(km, lnL, n_factors, post, qj, qL)
        vfe = factor_entropy_terms(km, post, lnprior) - _accuracy(km, lnL, post, qL)
        dF = abs(prev_vfe - vfe)
        prev_vfe = vfe
        it += 1
