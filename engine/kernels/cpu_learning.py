"""Numba kernels for agents with their own parameters: Dirichlet learning of pA / pB and the
parameter information gain (pymdp 0.0.7.1's ``update_A``, ``update_B``, ``calc_pA_info_gain``,
``calc_pB_info_gain``), from each agent's own A (over all factors) and B.

Design notes: ``docs/architecture.md``.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from engine.kernels.numba.expected_free_energy import drain_entropy
from engine.kernels.numba.scratch import scratch_float_size, scratch_views, scratch_views_end
from engine.kernels.numba.stages import (
    joint_into,
    policy_posterior,
    select_action_one,
)
from engine.kernels.numba.state_inference import infer_states_one
from engine.model.constants import EPS, EXP_M16

#: ``A`` .. ``pBt``: each agent's own entries ``(n, k)`` of the four parameter rows, at the
#: flat positions ``<name>_idx`` of the shared starting rows ``<name>0``
#: (``engine.runtime.learnt_params``)
KernelParams = namedtuple(
    "KernelParams",
    [
        "A", "pA", "Bt", "pBt", "A_idx", "pA_idx", "Bt_idx", "pBt_idx", "A0", "pA0", "Bt0",
        "pBt0", "learn_A", "learn_B", "lr_pA", "lr_pB", "learn_modality", "learn_factor",
        "pA_gain", "pB_gain", "learn_first",
    ],
)


@njit(cache=True, _nrt=False)
def _apply_dense_B(km, Bt, f, u, src, src_off, dst, dst_off):
    S = km.num_states[f]
    base = km.B_offset[f] + u * S * S
    for r in range(S):
        acc = 0.0
        row = base + r * S
        for c in range(S):
            acc += Bt[row + c] * src[src_off + c]
        dst[dst_off + r] = acc


@njit(cache=True, _nrt=False)
def _learn_A(km, kp, A, pA, obs_row, qj):
    """pA += lr * onehot(o) x q over columns where A > 0; then A = norm(pA) for every modality."""
    for m in range(km.num_obs.shape[0]):
        cols = km.A_cols[m]
        if kp.learn_modality[m]:
            row = km.A_offset[m] + obs_row[m] * cols
            for k in range(cols):
                if A[row + k] > 0.0:
                    pA[row + k] += kp.lr_pA * qj[k]
        base = km.A_offset[m]
        n_obs = km.num_obs[m]
        for k in range(cols):
            total = 0.0
            for o in range(n_obs):
                total += pA[base + o * cols + k]
            for o in range(n_obs):
                A[base + o * cols + k] = pA[base + o * cols + k] / total


@njit(cache=True, _nrt=False)
def _learn_B(km, kp, Bt, pBt, actions_row, post, qprev):
    """pB[:, :, a] += lr * q x q_prev where B[:, :, a] > 0; then B = norm(pB) everywhere."""
    for f in range(km.num_states.shape[0]):
        S = km.num_states[f]
        off = km.state_offset[f]
        if kp.learn_factor[f]:
            base = km.B_offset[f] + actions_row[f] * S * S
            for r in range(S):
                for c in range(S):
                    if Bt[base + r * S + c] > 0.0:
                        pBt[base + r * S + c] += kp.lr_pB * post[off + r] * qprev[off + c]
        for u in range(km.num_controls[f]):
            base = km.B_offset[f] + u * S * S
            for c in range(S):
                total = 0.0
                for r in range(S):
                    total += pBt[base + r * S + c]
                for r in range(S):
                    Bt[base + r * S + c] = pBt[base + r * S + c] / total


@njit(cache=True, _nrt=False)
def _wnorm(p, col_sum):
    """pymdp's spm_wnorm entry: 1/sum(p + e) - 1/(p + e), zero where p is 0."""
    if p > 0.0:
        return 1.0 / col_sum - 1.0 / (p + EPS)
    return 0.0


@njit(cache=True, _nrt=False)
def _node_value_direct(km, kc, kp, A, pA, d, qj, qo_m, qo, touched):
    """Utility, state and pA information gain of a predicted joint state, from the agent's A."""
    n_mod = km.num_obs.shape[0]
    n_joint = qj.shape[0]
    for m in range(n_mod):
        cols = km.A_cols[m]
        for o in range(km.num_obs[m]):
            acc = 0.0
            row = km.A_offset[m] + o * cols
            for j in range(n_joint):
                acc += A[row + j] * qj[j]
            qo_m[km.obs_offset[m] + o] = acc
    value = 0.0
    if kc.use_utility:
        for x in range(km.obs_offset[n_mod]):
            value += qo_m[x] * km.lnC[d, x]
    if kc.use_states_info_gain:
        n_joint_obs = 1
        for m in range(n_mod):
            n_joint_obs *= km.num_obs[m]
        ambiguity = 0.0
        n_touched = 0
        for j in range(n_joint):
            q = qj[j]
            if q > EXP_M16:
                h = 0.0
                for t in range(n_joint_obs):
                    p = 1.0
                    for m in range(n_mod):
                        o = (t // km.obs_stride[m]) % km.num_obs[m]
                        p *= A[km.A_offset[m] + o * km.A_cols[m] + j]
                    if p > 0.0:
                        h += p * np.log(p + EXP_M16)
                        if qo[t] == 0.0:
                            touched[n_touched] = t
                            n_touched += 1
                        qo[t] += q * p
                ambiguity += q * h
        value += ambiguity - drain_entropy(qo, touched, n_touched)
    if kp.pA_gain:
        for m in range(n_mod):
            cols = km.A_cols[m]
            base = km.A_offset[m]
            n_obs = km.num_obs[m]
            for o in range(n_obs):
                wq = 0.0
                for j in range(n_joint):
                    col_sum = 0.0
                    for o2 in range(n_obs):
                        col_sum += pA[base + o2 * cols + j] + EPS
                    wq += _wnorm(pA[base + o * cols + j], col_sum) * qj[j]
                value -= qo_m[km.obs_offset[m] + o] * wq
    return value


@njit(cache=True, _nrt=False)
def _pB_gain(km, pBt, f, u, q_next, next_off, q_prev, prev_off):
    """-q_next . (W_B[:, :, u] q_prev) for one factor (pymdp's calc_pB_info_gain term)."""
    S = km.num_states[f]
    base = km.B_offset[f] + u * S * S
    out = 0.0
    for r in range(S):
        acc = 0.0
        for c in range(S):
            col_sum = 0.0
            for r2 in range(S):
                col_sum += pBt[base + r2 * S + c] + EPS
            acc += _wnorm(pBt[base + r * S + c], col_sum) * q_prev[prev_off + c]
        out -= q_next[next_off + r] * acc
    return out


@njit(cache=True, inline="always")
def _learn(km, kp, i, A, pA, Bt, pBt, obs, prev_action, started, post, qs, qj):
    """pymdp's ``update_A`` / ``update_B`` for agent ``i`` from its new posterior ``post``
    (``qs[i]`` still holds the previous one)."""
    if kp.learn_A:
        joint_into(km, post, 0, qj)
        _learn_A(km, kp, A, pA, obs[i], qj)
    if kp.learn_B and started[i]:
        _learn_B(km, kp, Bt, pBt, prev_action[i], post, qs[i])


@njit(cache=True, _nrt=False)
def _step_agent_params(km, kc, kp, A, pA, Bt, pBt, i, agent_id, obs, qs, prev_action, started,
                       q_pi_out, G_out, actions_out, seed, tick, fs, touched, sizes, num_iter):
    n_factors = km.num_states.shape[0]
    n_mod = km.num_obs.shape[0]
    s_tot = km.state_offset[-1]
    n_pol = km.lnE.shape[0]
    n_nodes = km.node_depth.shape[0]
    prior, post, lnprior, qL, qtmp, lnL, qj, qdepth, gacc, gnode, G, qpi, qo, marg = \
        scratch_views(fs, sizes)
    end = scratch_views_end(sizes)
    qo_m = fs[end:end + km.obs_offset[n_mod]]

    if started[i]:
        for f in range(n_factors):
            _apply_dense_B(km, Bt, f, prev_action[i, f], qs[i], km.state_offset[f], prior,
                           km.state_offset[f])
    else:
        for s in range(s_tot):
            prior[s] = km.D_flat[s]
    infer_states_one(km, kc, A, obs[i], prior, post, lnprior, qL, qtmp, lnL, qj, num_iter)
    if kp.learn_first:
        _learn(km, kp, i, A, pA, Bt, pBt, obs, prev_action, started, post, qs, qj)

    for k in range(n_nodes):
        d = km.node_depth[k]
        dst = d * s_tot
        value = 0.0
        for f in range(n_factors):
            u = km.node_action[k, f]
            if d == 0:
                _apply_dense_B(km, Bt, f, u, post, km.state_offset[f], qdepth,
                               dst + km.state_offset[f])
            else:
                _apply_dense_B(km, Bt, f, u, qdepth, dst - s_tot + km.state_offset[f], qdepth,
                               dst + km.state_offset[f])
            if kp.pB_gain:
                if d == 0:
                    value += _pB_gain(km, pBt, f, u, qdepth, dst + km.state_offset[f], post,
                                      km.state_offset[f])
                else:
                    value += _pB_gain(km, pBt, f, u, qdepth, dst + km.state_offset[f], qdepth,
                                      dst - s_tot + km.state_offset[f])
        joint_into(km, qdepth, dst, qj)
        value += _node_value_direct(km, kc, kp, A, pA, d, qj, qo_m, qo, touched)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(n_pol):
        G[p] = gnode[km.leaf_of_policy[p]]
    policy_posterior(km, kc, G, qpi)
    select_action_one(km, kc, qpi, marg, seed, agent_id, tick, actions_out[i])
    if not kp.learn_first:
        _learn(km, kp, i, A, pA, Bt, pBt, obs, prev_action, started, post, qs, qj)
    for s in range(s_tot):
        qs[i, s] = post[s]
    for p in range(n_pol):
        G_out[i, p] = G[p]
        q_pi_out[i, p] = qpi[p]
    for f in range(n_factors):
        prev_action[i, f] = actions_out[i, f]
    started[i] = 1


def params_scratch_size(layout) -> int:  # noqa: ANN001
    """Float64 scratch one thread needs for ``step_agents_params``: the shared kernel's
    regions, the expected outcome of every modality, then a full row of each parameter array
    (A and pA as long as A, B and pB as long as B)."""
    return (scratch_float_size(layout) + int(layout.num_obs.sum())
            + 2 * (int(layout.A_flat.size) + int(layout.Bt_flat.size)))


@njit(cache=True, _nrt=False)
def _scatter(idx, own, full):
    for j in range(idx.shape[0]):
        full[idx[j]] = own[j]


@njit(cache=True, _nrt=False)
def _gather(idx, full, own):
    for j in range(idx.shape[0]):
        own[j] = full[idx[j]]


@njit(cache=True, _nrt=False)
def _fill_rows(kp, fscratch, at):
    """Every thread's full parameter rows (from ``at``) set to the shared starting rows."""
    for t in range(fscratch.shape[0]):
        pos = at
        for base in (kp.A0, kp.pA0, kp.Bt0, kp.pBt0):
            for k in range(base.shape[0]):
                fscratch[t, pos + k] = base[k]
            pos += base.shape[0]


@njit(cache=True, _nrt=False)
def _step_agent_own(km, kc, kp, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                    actions_out, seed, tick, fs, touched, sizes, num_iter, at):
    """Agent ``i``'s own parameter entries scattered into the thread's full rows (in ``fs``
    from ``at``), one step on them, the entries gathered back. Views made here, in a function
    without reference counting, cost the parallel loop nothing per agent."""
    nA, npA, nB, npB = kp.A0.shape[0], kp.pA0.shape[0], kp.Bt0.shape[0], kp.pBt0.shape[0]
    A = fs[at:at + nA]
    pA = fs[at + nA:at + nA + npA]
    Bt = fs[at + nA + npA:at + nA + npA + nB]
    pBt = fs[at + nA + npA + nB:at + nA + npA + nB + npB]
    _scatter(kp.A_idx, kp.A[i], A)
    _scatter(kp.pA_idx, kp.pA[i], pA)
    _scatter(kp.Bt_idx, kp.Bt[i], Bt)
    _scatter(kp.pBt_idx, kp.pBt[i], pBt)
    _step_agent_params(km, kc, kp, A, pA, Bt, pBt, i, agent_id, obs, qs, prev_action, started,
                       q_pi_out, G_out, actions_out, seed, tick, fs, touched, sizes, num_iter)
    _gather(kp.A_idx, A, kp.A[i])
    _gather(kp.pA_idx, pA, kp.pA[i])
    _gather(kp.Bt_idx, Bt, kp.Bt[i])
    _gather(kp.pBt_idx, pBt, kp.pBt[i])


@njit(cache=True, parallel=True)
def step_agents_params(km, kc, kp, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
                       actions_out, seed, tick, fscratch, iscratch, sizes, num_iter):
    """One full step (with learning / parameter information gain) for every agent, in
    parallel: each agent's own parameter entries are scattered into its thread's full rows,
    stepped there and gathered back (the other entries are the same for every agent)."""
    at = scratch_views_end(sizes) + km.obs_offset[-1]
    _fill_rows(kp, fscratch, at)
    for i in prange(obs.shape[0]):
        tid = numba.get_thread_id()
        # np.int64(i): Numba types the prange index int64 when it types this loop and uint64
        # in the parallel body it builds; one type compiles _step_agent_own once, not twice
        _step_agent_own(km, kc, kp, np.int64(i), agent_ids[i], obs, qs, prev_action, started,
                        q_pi_out, G_out, actions_out, seed, tick, fscratch[tid], iscratch[tid],
                        sizes, num_iter, at)
