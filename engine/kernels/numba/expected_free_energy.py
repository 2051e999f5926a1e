"""The expected-free-energy stage of the Numba step, twin of ``reference.expected_free_energy``:
the negative expected free energy G of every policy for one agent.

Policies are walked as a prefix tree, so a prefix shared by many policies is predicted and
valued once. A node's value is its expected utility plus the state information gain of its
predicted joint state (ambiguity minus outcome entropy: pymdp 0.0.7.1's ``spm_MDP_G`` over the
joint outcome, or pymdp 1.x's sum over modalities; the layout's tables pick which). Models
with one factor whose B is sparse take a walk that values a node from its parent's belief
(``policy_values_single``); every other model takes the generic walk (``policy_values_one``).

The two walks are calls of their own, compiled without reference counting (``_nrt=False``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.factored import factored_value
from engine.kernels.numba.heads import predict_tail, product_into, tail_tables
from engine.kernels.numba.scratch import MEMO_KEY, MEMO_PROBES, MEMO_SLOTS
from engine.kernels.numba.stages import apply_B, joint_into, predict_states
from engine.kernels.numba.vector_math import vlog
from engine.model.constants import EPS


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


# ------------------------------------------------------------- dense joint-outcome tables
@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def dense_outcomes_masked(po, q, qo, cut):
    """qo += sum_j q[j] * po[j, :] over the states above ``cut``, four states per pass."""
    n = qo.shape[0]
    n_joint = q.shape[0]
    j = 0
    while j + 4 <= n_joint:
        v0 = q[j] if q[j] > cut else 0.0
        v1 = q[j + 1] if q[j + 1] > cut else 0.0
        v2 = q[j + 2] if q[j + 2] > cut else 0.0
        v3 = q[j + 3] if q[j + 3] > cut else 0.0
        if v0 != 0.0 or v1 != 0.0 or v2 != 0.0 or v3 != 0.0:
            r0, r1, r2, r3 = po[j], po[j + 1], po[j + 2], po[j + 3]
            for o in range(n):
                qo[o] += (v0 * r0[o] + v1 * r1[o]) + (v2 * r2[o] + v3 * r3[o])
        j += 4
    while j < n_joint:
        if q[j] > cut:
            v0 = q[j]
            r0 = po[j]
            for o in range(n):
                qo[o] += v0 * r0[o]
        j += 1


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def dense_outcomes_rows(po, dq, n_rows, qo):
    """qo[r] += dq[r] @ po for rows ``r < n_rows`` of the flat (rows, S) beliefs ``dq`` and
    (rows, O) outcomes ``qo``: eight states per pass, each read once for every row, each
    outcome accumulated state by state in order."""
    S = po.shape[0]
    n = po.shape[1]
    j = 0
    while j + 8 <= S:
        p0, p1, p2, p3 = po[j], po[j + 1], po[j + 2], po[j + 3]
        p4, p5, p6, p7 = po[j + 4], po[j + 5], po[j + 6], po[j + 7]
        for r in range(n_rows):
            b = r * S + j
            v0, v1, v2, v3 = dq[b], dq[b + 1], dq[b + 2], dq[b + 3]
            v4, v5, v6, v7 = dq[b + 4], dq[b + 5], dq[b + 6], dq[b + 7]
            if (v0 != 0.0 or v1 != 0.0 or v2 != 0.0 or v3 != 0.0 or v4 != 0.0 or v5 != 0.0
                    or v6 != 0.0 or v7 != 0.0):
                out = qo[r * n:(r + 1) * n]
                for o in range(n):
                    acc = out[o] + v0 * p0[o]
                    acc += v1 * p1[o]
                    acc += v2 * p2[o]
                    acc += v3 * p3[o]
                    acc += v4 * p4[o]
                    acc += v5 * p5[o]
                    acc += v6 * p6[o]
                    acc += v7 * p7[o]
                    out[o] = acc
        j += 8
    while j < S:
        p0 = po[j]
        for r in range(n_rows):
            v0 = dq[r * S + j]
            if v0 != 0.0:
                out = qo[r * n:(r + 1) * n]
                for o in range(n):
                    out[o] += v0 * p0[o]
        j += 1


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def dense_entropy(qo):
    """sum qo ln(qo + 1e-16) over every joint outcome, resetting ``qo`` to zero (vectorised:
    the sum's order differs from a loop's by rounding)."""
    entropy = 0.0
    for o in range(qo.shape[0]):
        v = qo[o]
        entropy += v * vlog(v + EPS)
        qo[o] = 0.0
    return entropy


# ------------------------------------------- one modality split into a constant plus entries
@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def split_outcomes(km, q, q_off, n, base, qo):
    """The joint outcome of ``q[q_off:q_off + n]`` (states at or below the cut skipped) on the
    split path: the split modality's constant collected per outcome of the other modalities in
    ``base``, its other entries scattered into ``qo``. Returns the ambiguity."""
    n_rest = km.pf_rest.shape[1]
    n_big = qo.shape[0] // n_rest
    ambiguity = 0.0
    cut = km.gain_cut[0]
    for j in range(n):
        qj = q[q_off + j]
        if qj <= cut:
            continue
        ambiguity += qj * km.ambiguity[j]
        c = km.pf_const[j]
        for r in range(n_rest):
            w = qj * km.pf_rest[j, r]
            base[r] += w * c
            off = r * n_big
            for k in range(km.pf_ptr[j], km.pf_ptr[j + 1]):
                qo[off + km.pf_idx[k]] += w * km.pf_val[k]
    return ambiguity


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def split_entropy(base, qo):
    """sum qo ln(qo + 1e-16) over every joint outcome of the split path (``qo`` plus its
    constant), resetting both to zero."""
    n_rest = base.shape[0]
    n_big = qo.shape[0] // n_rest
    entropy = 0.0
    for r in range(n_rest):
        b = base[r]
        for o in range(n_big):
            v = max(qo[r * n_big + o] + b, 0.0)
            entropy += v * vlog(v + EPS)
            qo[r * n_big + o] = 0.0
        base[r] = 0.0
    return entropy


@njit(cache=True, error_model="numpy")
def split_gain(km, q, q_off, n, qo):
    """spm_MDP_G of ``q[q_off:q_off + n]`` on the split path; ``qo`` is the outcomes' scratch
    followed by the constants'."""
    n_jo = qo.shape[0] - km.pf_rest.shape[1]
    ambiguity = split_outcomes(km, q, q_off, n, qo[n_jo:], qo[:n_jo])
    return ambiguity - split_entropy(qo[n_jo:], qo[:n_jo])


@njit(cache=True, inline="always")
def states_info_gain(km, q, qo, touched):
    """Twin of reference.states_info_gain and reference.states_info_gain_per_modality: the
    state information gain of a predicted joint state ``q`` (pymdp 0.0.7.1's spm_MDP_G over
    the joint outcome, or pymdp 1.x's sum over modalities, as the layout's tables say).

    One pass over the joint states: ambiguity from the layout's table, the predicted outcomes
    accumulated over the non-zero outcomes of states above the layout's cut; then the outcome
    entropy over the touched entries, which are reset to zero.
    """
    if km.pf_const.shape[0]:
        return split_gain(km, q, 0, q.shape[0], qo)
    ambiguity = 0.0
    cut = km.gain_cut[0]
    if km.po_dense.shape[0]:
        for j in range(q.shape[0]):
            if q[j] > cut:
                ambiguity += q[j] * km.ambiguity[j]
        dense_outcomes_masked(km.po_dense, q, qo, cut)
        return ambiguity - dense_entropy(qo)
    n_touched = 0
    for j in range(q.shape[0]):
        qj = q[j]
        if qj > cut:
            ambiguity += qj * km.ambiguity[j]
            n_touched = add_outcomes(km, j, qj, qo, touched, n_touched)
    return ambiguity - drain_entropy(qo, touched, n_touched)


@njit(cache=True, inline="always")
def node_value(km, kc, q, d, qo, touched):
    """Utility plus pymdp's spm_MDP_G for a predicted joint state ``q`` at step ``d``."""
    value = 0.0
    if kc.use_utility:
        value += expected_utility(km, q, d)
    if kc.use_states_info_gain:
        value += states_info_gain(km, q, qo, touched)
    return value


# ------------------------------------------------------------------------ the generic walk
@njit(cache=True, _nrt=False, error_model="numpy")
def policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G):
    """Twin of reference.expected_free_energy for any model: the prefix-tree walk. A node is
    valued from its joint belief, or from its factor marginals where the layout has the
    factored tables (``factored.factored_value``; ``qj`` is then its scratch)."""
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
        elif km.F_sparse.shape[0]:
            value = factored_value(km, kc, qdepth, dst, d, qo, qj)
        else:
            joint_into(km, qdepth, dst, qj)
            value = node_value(km, kc, qj, d, qo, touched)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


# ------------------------------------------------- several factors: a shared tail per depth
@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def rows_entropy(table, t_off, n, weights, qo):
    """qo += sum_i weights[i] * table[t_off + i n:t_off + (i + 1) n] over the non-zero
    weights, then ``dense_entropy(qo)``: one call per node. The rows are read through one
    view of the table by index: a view per row costs more than a short row's arithmetic, and
    LLVM did not vectorise the loop indexing the table at an offset."""
    P = table[t_off:t_off + weights.shape[0] * n]
    for i in range(weights.shape[0]):
        v = weights[i]
        if v != 0.0:
            b = i * n
            for o in range(n):
                qo[o] += v * P[b + o]
    entropy = 0.0
    for o in range(qo.shape[0]):
        v = qo[o]
        entropy += v * vlog(v + EPS)
        qo[o] = 0.0
    return entropy


@njit(cache=True, inline="always")
def heads_gain(km, d, q, q_off, heads, qo, touched):
    """The state information gain of the node whose head belief is ``q[q_off:]`` at step
    ``d``, from step ``d``'s tables (``heads.tail_tables``): a head state whose joint states
    all pass the cut (or are zero) adds its table row, one whose states all fall at or below
    it nothing, and the others their passing joint states one by one, as
    ``states_info_gain`` does."""
    _, n_head, n_tail, n_table, tail, bounds, _, amb, table, _, weights, ptr, idx = heads
    cut = km.gain_cut[0]
    lo = bounds[2 * d]
    hi = bounds[2 * d + 1]
    r0 = d * n_tail
    t0 = d * n_table
    dense = km.po_dense.shape[0] > 0
    n = km.po_dense.shape[1]
    ambiguity = 0.0
    n_touched = 0
    for i in range(n_head):
        v = q[q_off + i]
        weights[i] = 0.0
        if v * hi <= cut:
            continue
        if v * lo > cut:
            ambiguity += v * amb[d * n_head + i]
            if dense:
                weights[i] = v
                continue
            for p in range(ptr[i], ptr[i + 1]):
                x = v * table[t0 + p]
                if x != 0.0:
                    o = idx[p]
                    if qo[o] == 0.0:
                        touched[n_touched] = o
                        n_touched += 1
                    qo[o] += x
            continue
        for r in range(n_tail):
            qr = v * tail[r0 + r]
            if qr > cut:
                j = i * n_tail + r
                ambiguity += qr * km.ambiguity[j]
                if dense:
                    for o in range(n):
                        qo[o] += qr * km.po_dense[j, o]
                else:
                    n_touched = add_outcomes(km, j, qr, qo, touched, n_touched)
    if dense:
        return ambiguity - rows_entropy(table, t0, n, weights, qo)
    if 4 * n_touched > qo.shape[0]:
        return ambiguity - dense_entropy(qo)
    return ambiguity - drain_entropy(qo, touched, n_touched)


@njit(cache=True, _nrt=False, error_model="numpy")
def policy_values_heads(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, heads, G):
    """Twin of reference.expected_free_energy for several factors whose last ones (the tail)
    are the same at every node of a depth (``scratch.head_factors``): the tail is predicted
    once per step, and a node predicts its head factors and is valued from their joint belief
    against the step's tables (``heads.tail_tables``), without its joint belief."""
    h, n_head, n_tail, n_table, tail, _, utility, _, _, q_head, _, _, _ = heads
    s_tot = km.state_offset[-1]
    n_depth = min(km.utility.shape[0], kc.max_depth)
    for d in range(n_depth):
        predict_tail(km, h, d, post, qdepth)
        tail_tables(km, kc, d, heads, qdepth, qo, touched)
    for k in range(km.node_depth.shape[0]):
        d = km.node_depth[k]
        if d >= kc.max_depth:                      # degraded horizon: value stops here
            gacc[d] = gacc[d - 1]
            gnode[k] = gacc[d]
            continue
        dst = d * s_tot
        for f in range(h):
            u = km.node_action[k, f]
            if d == 0:
                apply_B(km, f, u, post, km.state_offset[f], qdepth, dst + km.state_offset[f])
            else:
                apply_B(km, f, u, qdepth, dst - s_tot + km.state_offset[f], qdepth,
                        dst + km.state_offset[f])
        if h == 1:
            q, q_off = qdepth, dst
        else:
            product_into(km, qdepth, dst, 0, h, q_head)
            q, q_off = q_head, 0
        value = 0.0
        if kc.use_utility:
            for i in range(n_head):
                value += q[q_off + i] * utility[d * n_head + i]
        if kc.use_states_info_gain and n_table > 0:
            value += heads_gain(km, d, q, q_off, heads, qo, touched)
        elif kc.use_states_info_gain:
            for i in range(n_head):
                for r in range(n_tail):
                    qj[i * n_tail + r] = q[q_off + i] * tail[d * n_tail + r]
            value += states_info_gain(km, qj, qo, touched)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


# ------------------------------------------------------- one factor with sparse B: the walk
@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
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
    """The gain from the predicted states above the cut (``rows``, ``vals``), in list order."""
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
    """The gain of ``B[0][:, :, u] @ parent`` visiting only states that can pass the cut.

    A predicted state above the cut must receive mass from a parent state above cut / (2 S):
    the others hold at most cut / 2 together. Each candidate's prediction is
    the same row sum ``apply_B`` computes, so the states kept are exactly pymdp's.

    Deterministic moves make many policies predict the same belief (up-left = left-up): a
    small set of kept states is sorted by state and looked up in a per-thread memo, and the
    gain is always computed from the sorted list, so a hit returns the very same number.
    """
    count = 0
    cut = km.gain_cut[0]
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
            if v > cut:
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


@njit(cache=True, error_model="numpy")
def children_gains(km, parent, p_off, dq, dqo, gain, g_off):
    """The gain of ``B[0][:, :, u] @ parent`` for every action ``u`` into ``gain[g_off + u]``,
    from the dense outcome table: the predictions are made, cut and multiplied against the
    table together."""
    S = km.num_states[0]
    U = km.num_controls[0]
    n = dqo.shape[0] // U
    if km.pf_const.shape[0]:
        for u in range(U):
            apply_B(km, 0, u, parent, p_off, dq, u * S)
            gain[g_off + u] = split_gain(km, dq, u * S, S, dqo[:n])
        return
    cut = km.gain_cut[0]
    for u in range(U):
        apply_B(km, 0, u, parent, p_off, dq, u * S)
        for j in range(S):
            if dq[u * S + j] <= cut:
                dq[u * S + j] = 0.0
    dense_outcomes_rows(km.po_dense, dq, U, dqo)
    for u in range(U):
        ambiguity = 0.0
        for j in range(S):
            v = dq[u * S + j]
            if v != 0.0:
                ambiguity += v * km.ambiguity[j]
        gain[g_off + u] = ambiguity - dense_entropy(dqo[u * n:(u + 1) * n])


@njit(cache=True, _nrt=False, error_model="numpy")
def policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                         n_big, rows, vals, memo_key, memo_val, util, dq, dqo, gain, G):
    """Twin of reference.expected_free_energy for one factor with sparse B: the tree walk that
    values a node from its parent's belief.

    Utility is the parent's belief against the utility pulled back through the action,
    computed for every action at once when the parent's belief is known (``util[d, u]``); the
    information gain visits only predicted states that can pass the layout's cut. Only
    internal nodes materialise their prediction (for their children).
    """
    S = km.num_states[0]
    U = km.num_controls[0]
    horizon = km.utility.shape[0]
    tau = km.gain_cut[0] / (2.0 * S)
    dense = km.po_dense.shape[0] > 0 or km.pf_const.shape[0] > 0
    if kc.use_states_info_gain and dense:
        children_gains(km, post, 0, dq, dqo, gain, 0)
    elif kc.use_states_info_gain:
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
        if kc.use_states_info_gain and dense:
            value += gain[d * U + u]
        elif kc.use_states_info_gain:
            stamp[0] += 1
            value += sparse_info_gain(km, u, parent, p_off, big, d * S, n_big[d], seen,
                                      stamp[0], qo, touched, rows, vals, memo_key, memo_val)
        if d < min(horizon, kc.max_depth) - 1:
            apply_B(km, 0, u, parent, p_off, qdepth, d * S)
            if kc.use_states_info_gain and dense:
                children_gains(km, qdepth, d * S, dq, dqo, gain, (d + 1) * U)
            elif kc.use_states_info_gain:
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

    ``sparse`` is the thread's walk scratch (``scratch.sparse_views``): the one-sparse-factor
    walk's regions, used by the models whose one factor has a sparse B, and the multi-factor
    walk's (``scratch.head_views``), used by the models with a shared tail of factors.
    """
    seen, stamp, big, n_big, rows, vals, memo_key, memo_val, util, dq, dqo, gain, heads = sparse
    if km.num_states.shape[0] == 1 and km.B_sparse[0]:
        policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                             n_big, rows, vals, memo_key, memo_val, util, dq, dqo, gain, G)
    elif heads[0] < km.num_states.shape[0] and km.F_sparse.shape[0] == 0:
        policy_values_heads(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, heads, G)
    else:
        policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G)
