"""State inference of several factors for :data:`LANES` agents at once: the fixed-point
sweeps of :mod:`engine.kernels.numba.state_inference` with the agent innermost, so that the
short loops over a factor's states vectorise across agents.

Each lane does the same operations in the same order as ``infer_states_factors`` on one
agent, so a lane's posterior equals the one-agent kernel's bit for bit (the tests hold them
to it); pymdp 0.0.7.1's convergence test stops each lane on its own. Arrays are
``(entries, LANES)``; ``docs/architecture.md``, "Agents in lanes".
"""

from __future__ import annotations

from numba import njit

from engine.kernels.numba.scratch import LANE_SCALARS
from engine.kernels.numba.stages import likelihood, log_floored, n_listed
from engine.kernels.numba.state_inference import axis_factor, group_row
from engine.kernels.numba.vector_math import vexp, vlog
from engine.model.constants import EPS

_ACTIVE, _ITER, _VFE, _PREV, _DF, _T0, _T1, _T2, VALID = range(LANE_SCALARS)
"""Rows of the per-lane scalars: the lane still sweeping, its sweeps, free energy, the last
one, its change, three temporaries, and (the caller's) whether the lane holds an agent."""


# ---------------------------------------------------------------------------- lane stages
@njit(cache=True, inline="always")
def _softmax_lanes(x, out, lo, hi, mx, total, nl):
    """:func:`stages.softmax_into` in every lane (``mx`` and ``total`` are lane rows)."""
    for ln in range(nl):
        mx[ln] = x[lo, ln]
    for s in range(lo + 1, hi):
        for ln in range(nl):
            v = x[s, ln]
            mx[ln] = v if v > mx[ln] else mx[ln]
    for s in range(lo, hi):
        for ln in range(nl):
            out[s, ln] = vexp(x[s, ln] - mx[ln])
    for ln in range(nl):
        total[ln] = 0.0
    for s in range(lo, hi):
        for ln in range(nl):
            total[ln] += out[s, ln]
    for s in range(lo, hi):
        for ln in range(nl):
            out[s, ln] /= total[ln]


@njit(cache=True, inline="always")
def expand_lanes(num_states, state_offset, deps, listed, first, last, q, out, o0, nl,
                 q_off=0):
    """:func:`stages.expand_into` in every lane: the joint belief of axes ``first .. last - 1``
    (factors as :func:`axis_factor`) of the beliefs ``q[q_off:]`` into ``out[o0:]``; returns
    the entries written."""
    n = 1
    for ln in range(nl):
        out[o0, ln] = 1.0
    for i in range(first, last):
        f = axis_factor(deps, i, listed)
        S = num_states[f]
        base = q_off + state_offset[f]
        for a in range(n - 1, -1, -1):
            for s in range(S - 1, -1, -1):
                for ln in range(nl):
                    out[o0 + a * S + s, ln] = out[o0 + a, ln] * q[base + s, ln]
        n *= S
    return n


@njit(cache=True, inline="always")
def _message_lanes(num_states, state_offset, T, t0, deps, listed, k, t, q, w, out, acc,
                   nl):
    """:func:`state_inference.add_message` in every lane."""
    ft = axis_factor(deps, t, listed)
    d_t = num_states[ft]
    n_in = expand_lanes(num_states, state_offset, deps, listed, t + 1, k, q, w, 0, nl)
    n_out = expand_lanes(num_states, state_offset, deps, listed, 0, t, q, w, n_in, nl)
    ot = state_offset[ft]
    for a in range(n_out):
        for s in range(d_t):
            base = t0 + (a * d_t + s) * n_in
            for ln in range(nl):
                acc[ln] = 0.0
            for b in range(n_in):
                for ln in range(nl):
                    acc[ln] += T[base + b, ln] * w[b, ln]
            for ln in range(nl):
                out[ot + s, ln] += w[n_in + a, ln] * acc[ln]


@njit(cache=True, _nrt=False, error_model="numpy")
def add_messages_lanes(num_states, state_offset, T, t0, deps, listed, k, q, w, out, acc,
                       nl):
    """:func:`state_inference.add_messages` in every lane: ``T[t0:]`` holds each lane's
    tensor, ``q`` its marginals, ``out`` its messages. It takes the two arrays it reads, not
    the model: a call copies every array of a namedtuple argument."""
    if k == 2:
        f0 = axis_factor(deps, 0, listed)
        f1 = axis_factor(deps, 1, listed)
        d0 = num_states[f0]
        d1 = num_states[f1]
        o0 = state_offset[f0]
        o1 = state_offset[f1]
        for a in range(d0):
            base = t0 + a * d1
            for ln in range(nl):
                acc[ln] = 0.0
            for b in range(d1):
                for ln in range(nl):
                    v = T[base + b, ln]
                    acc[ln] += v * q[o1 + b, ln]
                    out[o1 + b, ln] += v * q[o0 + a, ln]
            for ln in range(nl):
                out[o0 + a, ln] += acc[ln]
        return
    for t in range(k):
        if num_states[axis_factor(deps, t, listed)] > 1:
            _message_lanes(num_states, state_offset, T, t0, deps, listed, k, t, q, w, out,
                           acc, nl)


# ------------------------------------------------------------------------- the inference
@njit(cache=True, _nrt=False, error_model="numpy")
def infer_states_lanes(km, kc, A_flat, obs, lo, n, views, num_iter):
    """``infer_states_factors`` for the agents ``lo .. lo + n`` (``n <= LANES``): their
    priors in ``views``' first array (``scratch.lane_views``), their posteriors left in its
    second. Lanes whose ``VALID`` scalar is 0 compute but are not read. Only the group's
    ``n`` lanes run, each loop over them with a bound LLVM does not know, so that it
    vectorises the loop rather than unrolling it."""
    prior, post, base, qL, qtmp, table, w, scalars = views
    for ln in range(n):
        scalars[_ACTIVE, ln] = scalars[VALID, ln]
    n_factors = km.num_states.shape[0]
    for f in range(n_factors):
        for s in range(km.state_offset[f], km.state_offset[f + 1]):
            for ln in range(n):
                post[s, ln] = 1.0 / km.num_states[f]
    floor = km.ln_floor[0]
    if floor != 0.0:
        _sweeps_pymdp1_lanes(km, obs, lo, n, prior, post, base, qL, qtmp, table, w, scalars,
                             num_iter, floor)
    else:
        _sweeps_pymdp0_lanes(km, kc, A_flat, obs, lo, n, prior, post, base, qL, qtmp, table,
                             w, scalars, num_iter)


@njit(cache=True, inline="always")
def _sweeps_pymdp1_lanes(km, obs, lo, n, prior, post, base, qL, qtmp, table, w, scalars,
                         num_iter, floor):
    """``state_inference._sweeps_pymdp1`` in every lane; the groups over several factors
    are gathered once into ``table`` (one row block per group)."""
    s_tot = km.state_offset[-1]
    for s in range(s_tot):
        for ln in range(n):
            base[s, ln] = log_floored(prior[s, ln], floor)
    n_groups = km.LL_cols.shape[0]
    t_off = 0
    for g in range(n_groups):
        cols = km.LL_cols[g]
        if n_listed(km.LL_deps, g) == 1:
            o = km.state_offset[km.LL_deps[g, 0]]
            for ln in range(n):
                row = group_row(km, g, obs[lo + ln])
                for s in range(cols):
                    base[o + s, ln] += km.LL_flat[row + s]
        else:
            for ln in range(n):
                row = group_row(km, g, obs[lo + ln])
                for j in range(cols):
                    table[t_off + j, ln] = km.LL_flat[row + j]
            t_off += cols
    mx = scalars[_T0]
    total = scalars[_T1]
    for _ in range(num_iter):
        for s in range(s_tot):
            for ln in range(n):
                qL[s, ln] = base[s, ln]
        t_off = 0
        for g in range(n_groups):
            k = n_listed(km.LL_deps, g)
            if k > 1:
                add_messages_lanes(km.num_states, km.state_offset, table, t_off,
                                   km.LL_deps[g], True, k, post, w, qL, scalars[_T2], n)
                t_off += km.LL_cols[g]
        for f in range(km.num_states.shape[0]):
            _softmax_lanes(qL, qtmp, km.state_offset[f], km.state_offset[f + 1], mx, total,
                           n)
        for s in range(s_tot):
            for ln in range(n):
                post[s, ln] = qtmp[s, ln]


@njit(cache=True, inline="always")
def _joint_messages_lanes(km, table, n_factors, q, w, out, acc, nl):
    for s in range(km.state_offset[-1]):
        for ln in range(nl):
            out[s, ln] = 0.0
    add_messages_lanes(km.num_states, km.state_offset, table, 0, km.num_states, False,
                       n_factors, q, w, out, acc, nl)


@njit(cache=True, inline="always")
def _entropy_lanes(km, q, lnprior, vfe, nl):
    """``factor_entropy_terms`` per lane, into ``vfe``."""
    for ln in range(nl):
        vfe[ln] = 0.0
    for s in range(km.state_offset[-1]):
        for ln in range(nl):
            v = q[s, ln]
            vfe[ln] += v * vlog(v + EPS) - v * lnprior[s, ln]


@njit(cache=True, inline="always")
def _subtract_accuracy_lanes(km, table, q, messages, vfe, nl):
    """``vfe -= state_inference._accuracy`` per lane."""
    for f in range(km.num_states.shape[0]):
        if km.num_states[f] > 1:
            for ln in range(nl):
                acc = 0.0
                for s in range(km.state_offset[f], km.state_offset[f + 1]):
                    acc += q[s, ln] * messages[s, ln]
                vfe[ln] -= acc
            return
    for ln in range(nl):
        vfe[ln] -= table[0, ln]


@njit(cache=True, inline="always")
def _sweeps_pymdp0_lanes(km, kc, A_flat, obs, lo, n, prior, post, lnprior, qL, qtmp, lnL, w,
                         scalars, num_iter):
    """``infer_states_factors``' pymdp 0.0.7.1 sweeps in every lane, each lane stopping
    when its free energy settles (its posterior then stays as it was)."""
    n_factors = km.num_states.shape[0]
    s_tot = km.state_offset[-1]
    active = scalars[_ACTIVE]
    it = scalars[_ITER]
    vfe = scalars[_VFE]
    dF = scalars[_DF]
    prev = scalars[_PREV]
    acc = scalars[_T2]
    for ln in range(n):
        obs_row = obs[lo + ln]
        for j in range(lnL.shape[0]):
            lnL[j, ln] = vlog(likelihood(km, A_flat, obs_row, j) + EPS)
    for s in range(s_tot):
        for ln in range(n):
            lnprior[s, ln] = vlog(prior[s, ln] + EPS)
    _entropy_lanes(km, post, lnprior, vfe, n)
    _joint_messages_lanes(km, lnL, n_factors, post, w, qL, acc, n)
    n_running = 0
    for ln in range(n):
        it[ln] = 0.0
        dF[ln] = kc.dF
        running = active[ln] != 0.0 and num_iter > 0 and kc.dF >= kc.dF_tol
        active[ln] = 1.0 if running else 0.0
        if running:
            n_running += 1
    while n_running:
        for s in range(s_tot):
            for ln in range(n):
                qL[s, ln] += lnprior[s, ln]
        for f in range(n_factors):
            _softmax_lanes(qL, qtmp, km.state_offset[f], km.state_offset[f + 1],
                           scalars[_T0], scalars[_T1], n)
        for s in range(s_tot):
            for ln in range(n):
                post[s, ln] = qtmp[s, ln] if active[ln] != 0.0 else post[s, ln]
        _joint_messages_lanes(km, lnL, n_factors, post, w, qL, acc, n)
        for ln in range(n):
            prev[ln] = vfe[ln]
        _entropy_lanes(km, post, lnprior, vfe, n)
        _subtract_accuracy_lanes(km, lnL, post, qL, vfe, n)
        n_running = 0
        for ln in range(n):
            if active[ln] != 0.0:
                dF[ln] = abs(prev[ln] - vfe[ln])
                it[ln] += 1.0
                running = it[ln] < num_iter and dF[ln] >= kc.dF_tol
                active[ln] = 1.0 if running else 0.0
                if running:
                    n_running += 1
