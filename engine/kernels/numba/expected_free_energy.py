"""The expected-free-energy stage of the Numba step, twin of ``reference.expected_free_energy``:
the negative expected free energy G of every policy for one agent.

Policies are walked as a prefix tree, so a prefix shared by many policies is predicted and
valued once. A node's value is its expected utility plus pymdp's ``spm_MDP_G`` (ambiguity minus
outcome entropy) of its predicted joint state. Models with one factor whose B is sparse take a
walk that values a node from its parent's belief (``policy_values_single``); every other model
takes the generic walk (``policy_values_one``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.scratch import MEMO_KEY, MEMO_PROBES, MEMO_SLOTS
from engine.kernels.numba.stages import apply_B, joint_into, predict_states
from engine.model.constants import EPS, EXP_M16


# ------------------------------------------------------------------------ one node's value
@njit(cache=True, inline="always")
def expected_utility(km, q, d):
    """Twin of reference.add_utility: a predicted joint state's expected ln-preference at step
    ``d``, read from the layout's per-joint-state table ``km.utility``."""
    value = 0.0
    for j in range(q.shape[0]):
        value += q[j] * km.utility[d, j]
    return value


@njit(cache=True, inline="always")
def add_outcomes(km, j, q, qo, touched, n_touched):
    """qo += q * p(joint outcome | state j) over j's non-zero outcomes; newly touched outcomes
    are appended to ``touched``. Returns the new touched count."""
    for p in range(km.po_ptr[j], km.po_ptr[j + 1]):
        o = km.po_idx[p]
        if qo[o] == 0.0:
            touched[n_touched] = o
            n_touched += 1
        qo[o] += q * km.po_val[p]
    return n_touched


@njit(cache=True, inline="always")
def drain_entropy(qo, touched, n_touched):
    """sum qo ln(qo + 1e-16) over the touched joint outcomes, resetting them to zero."""
    entropy = 0.0
    for t in range(n_touched):
        o = touched[t]
        v = qo[o]
        entropy += v * np.log(v + EPS)
        qo[o] = 0.0
    return entropy


@njit(cache=True, inline="always")
def states_info_gain(km, q, qo, touched):
    """Twin of reference.states_info_gain: pymdp's spm_MDP_G of a predicted joint state ``q``.

    One pass over the joint states: ambiguity from the layout's table, the predicted joint
    outcome accumulated over the non-zero outcomes of states above e^-16; then the outcome
    entropy over the touched entries, which are reset to zero.
    """
    ambiguity = 0.0
    n_touched = 0
    for j in range(q.shape[0]):
        qj = q[j]
        if qj > EXP_M16:
            ambiguity += qj * km.ambiguity[j]
            n_touched = add_outcomes(km, j, qj, qo, touched, n_touched)
    return ambiguity - drain_entropy(qo, touched, n_touched)


@njit(cache=True)
def node_value(km, kc, q, d, qo, touched):
    """Utility plus pymdp's spm_MDP_G for a predicted joint state ``q`` at step ``d``."""
    value = 0.0
    if kc.use_utility:
        value += expected_utility(km, q, d)
    if kc.use_states_info_gain:
        value += states_info_gain(km, q, qo, touched)
    return value


# ------------------------------------------------------------------------ the generic walk
@njit(cache=True)
def policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G):
    """Twin of reference.expected_free_energy for any model: the prefix-tree walk."""
    s_tot = km.state_offset[-1]
    for k in range(km.node_depth.shape[0]):
        d = km.node_depth[k]
        if d >= kc.max_depth:                      # degraded horizon: value stops here
            gacc[d] = gacc[d - 1]
            gnode[k] = gacc[d]
            continue
        dst = d * s_tot
        if d == 0:
            predict_states(km, km.node_action[k], post, 0, qdepth, dst)
        else:
            predict_states(km, km.node_action[k], qdepth, dst - s_tot, qdepth, dst)
        if km.num_states.shape[0] == 1:
            value = node_value(km, kc, qdepth[dst:dst + s_tot], d, qo, touched)
        else:
            joint_into(km, qdepth, dst, qj)
            value = node_value(km, kc, qj, d, qo, touched)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


# ------------------------------------------------------- one factor with sparse B: the walk
@njit(cache=True, fastmath={"reassoc", "contract"})
def dots_all(parent, p_off, rows, n, out, out_off):
    """out[out_off + u] = rows[u] . parent[p_off:p_off + n] for every row: one call for all
    actions, each sum reassociated so that it vectorises (its order differs by rounding)."""
    for u in range(rows.shape[0]):
        acc = 0.0
        for c in range(n):
            acc += parent[p_off + c] * rows[u, c]
        out[out_off + u] = acc


@njit(cache=True, inline="always")
def big_states(q, q_off, n, tau, big, big_off):
    """Indices of the states of ``q`` above ``tau``, written to ``big[big_off:]``; their count."""
    count = 0
    for c in range(n):
        if q[q_off + c] > tau:
            big[big_off + count] = c
            count += 1
    return count


@njit(cache=True, inline="always")
def gain_from_states(km, rows, vals, count, qo, touched):
    """spm_MDP_G from the predicted states above e^-16 (``rows``, ``vals``), in list order."""
    ambiguity = 0.0
    n_touched = 0
    for i in range(count):
        r = rows[i]
        v = vals[i]
        ambiguity += v * km.ambiguity[r]
        n_touched = add_outcomes(km, r, v, qo, touched, n_touched)
    return ambiguity - drain_entropy(qo, touched, n_touched)


@njit(cache=True, inline="always")
def sparse_info_gain(km, u, parent, p_off, big, big_off, n_big, seen, stamp, qo, touched,
                     rows, vals, memo_key, memo_val):
    """spm_MDP_G of ``B[0][:, :, u] @ parent`` visiting only states that can pass e^-16.

    A predicted state above e^-16 must receive mass from a parent state above
    e^-16 / (2 S): the others hold at most e^-16 / 2 together. Each candidate's prediction is
    the same row sum ``apply_B`` computes, so the states kept are exactly pymdp's.

    Deterministic moves make many policies predict the same belief (up-left = left-up): a
    small set of kept states is sorted by state and looked up in a per-thread memo, and the
    gain is always computed from the sorted list, so a hit returns the very same number.
    """
    count = 0
    for b in range(n_big):
        c = big[big_off + b]
        for k in range(km.Bc_colptr[u, c], km.Bc_colptr[u, c + 1]):
            r = km.Bc_row[k]
            if seen[r] == stamp:
                continue
            seen[r] = stamp
            v = 0.0
            for kk in range(km.Bs_rowptr[0, u, r], km.Bs_rowptr[0, u, r + 1]):
                v += km.Bs_val[kk] * parent[p_off + km.Bs_col[kk]]
            if v > EXP_M16:
                rows[count] = r
                vals[count] = v
                count += 1
    if count > MEMO_KEY:
        return gain_from_states(km, rows, vals, count, qo, touched)
    for i in range(1, count):                        # insertion sort by state
        r, v = rows[i], vals[i]
        j = i - 1
        while j >= 0 and rows[j] > r:
            rows[j + 1] = rows[j]
            vals[j + 1] = vals[j]
            j -= 1
        rows[j + 1] = r
        vals[j + 1] = v
    h = np.uint64(count)
    for i in range(count):
        h = h * np.uint64(1000003) + np.uint64(rows[i]) * np.uint64(2654435761)
        h ^= np.uint64(vals[i] * 9007199254740992.0)
    home = np.int64(h % np.uint64(MEMO_SLOTS))
    for probe in range(MEMO_PROBES):
        slot = (home + probe) % MEMO_SLOTS
        if memo_key[slot, 0] == count + 1:
            same = True
            for i in range(count):
                if memo_key[slot, 1 + i] != rows[i] or memo_val[slot, i] != vals[i]:
                    same = False
                    break
            if same:
                return memo_val[slot, MEMO_KEY]
    value = gain_from_states(km, rows, vals, count, qo, touched)
    memo_key[home, 0] = count + 1
    for i in range(count):
        memo_key[home, 1 + i] = rows[i]
        memo_val[home, i] = vals[i]
    memo_val[home, MEMO_KEY] = value
    return value


@njit(cache=True, inline="always")
def policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                         n_big, rows, vals, memo_key, memo_val, util, G):
    """Twin of reference.expected_free_energy for one factor with sparse B: the tree walk that
    values a node from its parent's belief.

    Utility is the parent's belief against the utility pulled back through the action,
    computed for every action at once when the parent's belief is known (``util[d, u]``); the
    information gain visits only predicted states that can pass pymdp's e^-16 cut. Only
    internal nodes materialise their prediction (for their children).
    """
    S = km.num_states[0]
    U = km.num_controls[0]
    horizon = km.utility.shape[0]
    tau = EXP_M16 / (2.0 * S)
    if kc.use_states_info_gain:
        n_big[0] = big_states(post, 0, S, tau, big, 0)
    if kc.use_utility:
        dots_all(post, 0, km.utility_B[0], S, util, 0)
    for k in range(km.node_depth.shape[0]):
        d = km.node_depth[k]
        if d >= kc.max_depth:                      # degraded horizon: value stops here
            gacc[d] = gacc[d - 1]
            gnode[k] = gacc[d]
            continue
        u = km.node_action[k, 0]
        if d == 0:
            parent = post
            p_off = 0
        else:
            parent = qdepth
            p_off = (d - 1) * S
        value = 0.0
        if kc.use_utility:
            value += util[d * U + u]
        if kc.use_states_info_gain:
            stamp[0] += 1
            value += sparse_info_gain(km, u, parent, p_off, big, d * S, n_big[d], seen,
                                      stamp[0], qo, touched, rows, vals, memo_key, memo_val)
        if d < min(horizon, kc.max_depth) - 1:
            apply_B(km, 0, u, parent, p_off, qdepth, d * S)
            if kc.use_states_info_gain:
                n_big[d + 1] = big_states(qdepth, d * S, S, tau, big, (d + 1) * S)
            if kc.use_utility:
                dots_all(qdepth, d * S, km.utility_B[d + 1], S, util, (d + 1) * U)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


# ------------------------------------------------------------------------------ the stage
@njit(cache=True, inline="always")
def expected_free_energy_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, sparse, G):
    """Twin of reference.expected_free_energy: G of every policy for one agent's posterior.

    ``sparse`` is the thread's one-sparse-factor scratch (``scratch.sparse_views``), used by
    the models whose one factor has a sparse B.
    """
    if km.num_states.shape[0] == 1 and km.B_sparse[0]:
        seen, stamp, big, n_big, rows, vals, memo_key, memo_val, util = sparse
        policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                             n_big, rows, vals, memo_key, memo_val, util, G)
    else:
        policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G)
