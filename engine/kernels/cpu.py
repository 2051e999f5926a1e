"""Numba kernels: one agent step (state inference, expected free energy over the policy tree,
policy posterior, action selection), parallel over agents.

The arithmetic is pymdp 0.0.7.1's (see ``reference.py``), reorganised for speed:

* a single-factor posterior ``softmax(ln(L + e) + ln(p + e))`` is computed as the normalised
  product ``(L + e)(p + e)``: the same number without a logarithm or exponential per state;
* expected utility and ambiguity are read from per-joint-state tables of the layout, and the
  outcome entropy touches only the non-zero joint outcomes of states above pymdp's e^-16 cut;
* policies are walked as a prefix tree, so a prefix shared by many policies is computed once;
* B factors that are sparse (deterministic moves) are multiplied from coordinate lists.

Per-agent state (beliefs, q(pi), G) is stored in the config's dtype; every intermediate is float64
in per-thread scratch, so the float32 path differs from float64 only by the rounding of stored
state. Kernels write into caller-provided arrays and allocate nothing per call.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from engine.kernels.rng import uniform
from engine.model.constants import EPS, EXP_M16
from engine.model.layout import ModelLayout

KernelModel = namedtuple(
    "KernelModel",
    [
        "num_states", "num_obs", "num_controls", "state_offset", "joint_stride", "A_flat",
        "A_offset", "A_cols", "jidx", "Bt_flat", "B_offset", "B_sparse", "Bs_rowptr",
        "Bs_col", "Bs_val", "B_det", "Bd_row", "Bd_val", "jidx_identity", "D_flat", "utility",
        "ambiguity", "po_ptr", "po_idx", "po_val", "lnE", "lnC", "obs_offset", "obs_stride",
        "node_depth", "node_action", "leaf_of_policy", "first_action", "Bc_colptr", "Bc_row",
        "utility_B",
    ],
)

KernelConfig = namedtuple(
    "KernelConfig",
    [
        "gamma", "alpha", "use_utility", "use_states_info_gain", "stochastic", "full_sampling",
        "num_iter", "dF", "dF_tol", "max_depth",
    ],
)


def kernel_model(layout: ModelLayout) -> KernelModel:
    """The layout's arrays in the tuple the kernels take (read-only C-contiguous views)."""
    return kernel_model_from(lambda name: getattr(layout, name) if hasattr(layout, name)
                             else getattr(layout.tree, _TREE_FIELDS[name]))


_TREE_FIELDS = {"node_depth": "depth", "node_action": "action",
                "leaf_of_policy": "leaf_of_policy"}


def kernel_model_from(get) -> KernelModel:  # noqa: ANN001
    """A KernelModel from ``get(field) -> array`` (the layout, or views of shared memory).

    Every array is handed over as a read-only C-contiguous view, so the master and workers
    that attach shared memory read-only compile and share one kernel signature.
    """
    arrays = []
    for name in KernelModel._fields:
        view = np.ascontiguousarray(get(name)).view()
        view.setflags(write=False)
        arrays.append(view)
    return KernelModel(*arrays)


def kernel_config(config, num_iter: int | None = None,  # noqa: ANN001
                  max_depth: int | None = None) -> KernelConfig:
    """Scalars of an InferenceConfig for the kernels; ``num_iter``/``max_depth`` degrade it.

    ``max_depth`` < policy_len values every policy by its first ``max_depth`` steps only
    (the degradation ladder's shorter horizon: deeper tree nodes are skipped).
    """
    return KernelConfig(
        float(config.gamma), float(config.alpha), bool(config.use_utility),
        bool(config.use_states_info_gain), config.action_selection == "stochastic",
        config.sampling_mode == "full", int(config.num_iter if num_iter is None else num_iter),
        float(config.dF), float(config.dF_tol),
        int(config.policy_len if max_depth is None else max_depth),
    )


# ------------------------------------------------------------------------------------ helpers
@njit(cache=True, inline="always")
def _apply_B(km, f, u, src, src_off, dst, dst_off):
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
    else:
        base = km.B_offset[f] + u * S * S
        for r in range(S):
            acc = 0.0
            row = base + r * S
            for c in range(S):
                acc += km.Bt_flat[row + c] * src[src_off + c]
            dst[dst_off + r] = acc


@njit(cache=True)
def _likelihood(km, A_flat, obs_row, j):
    """prod_m A_m[o_m, joint state j]."""
    like = 1.0
    for m in range(km.num_obs.shape[0]):
        like *= A_flat[km.A_offset[m] + obs_row[m] * km.A_cols[m] + km.jidx[m, j]]
    return like


@njit(cache=True)
def _joint(km, q, q_off, out):
    """out[j] = prod_f q[f][idx_f(j)] over the joint state space."""
    n_factors = km.num_states.shape[0]
    for j in range(out.shape[0]):
        v = 1.0
        for f in range(n_factors):
            s = (j // km.joint_stride[f]) % km.num_states[f]
            v *= q[q_off + km.state_offset[f] + s]
        out[j] = v


@njit(cache=True)
def _softmax_into(x, out, lo, hi):
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
def _factor_entropy_terms(km, q, lnprior):
    """sum_f [q_f . ln(q_f + e) - q_f . ln p_f] (pymdp's calc_free_energy without accuracy)."""
    total = 0.0
    for s in range(km.state_offset[-1]):
        total += q[s] * np.log(q[s] + EPS) - q[s] * lnprior[s]
    return total


# ------------------------------------------------------------------------------------ stages
@njit(cache=True, inline="always")
def infer_states_one(km, kc, A_flat, obs_row, prior, post, lnprior, qL, qtmp, lnL, qj,
                     num_iter):
    """pymdp's run_vanilla_fpi for one agent: prior -> post (both flat over factors).

    ``A_flat`` is the model's compact A (``km.A_flat``) or one agent's learnt copy.
    """
    n_factors = km.num_states.shape[0]
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
        lnL[j] = np.log(_likelihood(km, A_flat, obs_row, j) + EPS)
    s_tot = km.state_offset[-1]
    for f in range(n_factors):
        for s in range(km.state_offset[f], km.state_offset[f + 1]):
            post[s] = 1.0 / km.num_states[f]
    for s in range(s_tot):
        lnprior[s] = np.log(prior[s] + EPS)
    prev_vfe = _factor_entropy_terms(km, post, lnprior)
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
                        w *= post[km.state_offset[g] + (j // km.joint_stride[g]) % km.num_states[g]]
                qL[km.state_offset[f] + (j // km.joint_stride[f]) % km.num_states[f]] += w
        for s in range(s_tot):
            qL[s] += lnprior[s]
        for f in range(n_factors):
            _softmax_into(qL, qtmp, km.state_offset[f], km.state_offset[f + 1])
        for s in range(s_tot):
            post[s] = qtmp[s]
        _joint(km, post, 0, qj)
        accuracy = 0.0
        for j in range(n_joint):
            accuracy += lnL[j] * qj[j]
        vfe = _factor_entropy_terms(km, post, lnprior) - accuracy
        dF = abs(prev_vfe - vfe)
        prev_vfe = vfe
        it += 1


@njit(cache=True, inline="always")
def _add_outcomes(km, j, q, qo, touched, n_touched):
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
def _drain_entropy(qo, touched, n_touched):
    """sum qo ln(qo + 1e-16) over the touched joint outcomes, resetting them to zero."""
    entropy = 0.0
    for t in range(n_touched):
        o = touched[t]
        v = qo[o]
        entropy += v * np.log(v + EPS)
        qo[o] = 0.0
    return entropy


@njit(cache=True)
def _node_value(km, kc, q, d, qo, touched):
    """Utility plus pymdp's spm_MDP_G for a predicted joint state ``q`` at step ``d``.

    One pass over the joint states: utility and ambiguity from the layout's tables, the
    predicted joint outcome accumulated over the non-zero outcomes of states above e^-16;
    then the outcome entropy over the touched entries, which are reset to zero.
    """
    value = 0.0
    if kc.use_utility:
        for j in range(q.shape[0]):
            value += q[j] * km.utility[d, j]
    if kc.use_states_info_gain:
        ambiguity = 0.0
        n_touched = 0
        for j in range(q.shape[0]):
            qj = q[j]
            if qj > EXP_M16:
                ambiguity += qj * km.ambiguity[j]
                n_touched = _add_outcomes(km, j, qj, qo, touched, n_touched)
        value += ambiguity - _drain_entropy(qo, touched, n_touched)
    return value


@njit(cache=True)
def policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G):
    """Negative expected free energy of every policy for one agent (prefix tree walk)."""
    n_factors = km.num_states.shape[0]
    s_tot = km.state_offset[-1]
    for k in range(km.node_depth.shape[0]):
        d = km.node_depth[k]
        if d >= kc.max_depth:                      # degraded horizon: value stops here
            gacc[d] = gacc[d - 1]
            gnode[k] = gacc[d]
            continue
        dst = d * s_tot
        for f in range(n_factors):
            if d == 0:
                _apply_B(km, f, km.node_action[k, f], post, km.state_offset[f], qdepth,
                         dst + km.state_offset[f])
            else:
                _apply_B(km, f, km.node_action[k, f], qdepth, dst - s_tot + km.state_offset[f],
                         qdepth, dst + km.state_offset[f])
        if n_factors == 1:
            value = _node_value(km, kc, qdepth[dst:dst + s_tot], d, qo, touched)
        else:
            _joint(km, qdepth, dst, qj)
            value = _node_value(km, kc, qj, d, qo, touched)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


@njit(cache=True, fastmath={"reassoc", "contract"})
def _dots_all(parent, p_off, rows, n, out, out_off):
    """out[out_off + u] = rows[u] . parent[p_off:p_off + n] for every row: one call for all
    actions, each sum reassociated so that it vectorises (its order differs by rounding)."""
    for u in range(rows.shape[0]):
        acc = 0.0
        for c in range(n):
            acc += parent[p_off + c] * rows[u, c]
        out[out_off + u] = acc


@njit(cache=True, inline="always")
def _big_states(q, q_off, n, tau, big, big_off):
    """Indices of the states of ``q`` above ``tau``, written to ``big[big_off:]``; their count."""
    count = 0
    for c in range(n):
        if q[q_off + c] > tau:
            big[big_off + count] = c
            count += 1
    return count


MEMO_SLOTS = 256          # information-gain memo entries per thread (a power of two)
MEMO_KEY = 8             # predicted beliefs with more states above e^-16 are not memoised
MEMO_PROBES = 4
FIRST_MEMO_FLOATS = 65536   # the first-step memo's stored results per thread (512 KiB)


@njit(cache=True, inline="always")
def first_slots(s_tot, n_pol):
    """First-step memo entries per thread (distinct first observations remembered)."""
    return max(64, min(512, FIRST_MEMO_FLOATS // (s_tot + 2 * n_pol)))


def first_memo_ints(layout: ModelLayout) -> int:
    """Int64 scratch the first-step memo takes at the end of a thread's row: per slot a
    filled flag and the observation it holds, then the memo token (the row's last entry)."""
    n_mod = len(layout.num_obs)
    return 1 + first_slots(layout.state_size, layout.n_policies) * (1 + n_mod)

@njit(cache=True, inline="always")
def _gain_from_states(km, rows, vals, count, qo, touched):
    """spm_MDP_G from the predicted states above e^-16 (``rows``, ``vals``), in list order."""
    ambiguity = 0.0
    n_touched = 0
    for i in range(count):
        r = rows[i]
        v = vals[i]
        ambiguity += v * km.ambiguity[r]
        n_touched = _add_outcomes(km, r, v, qo, touched, n_touched)
    return ambiguity - _drain_entropy(qo, touched, n_touched)


@njit(cache=True, inline="always")
def _sparse_info_gain(km, u, parent, p_off, big, big_off, n_big, seen, stamp, qo, touched,
                      rows, vals, memo_key, memo_val):
    """spm_MDP_G of ``B[0][:, :, u] @ parent`` visiting only states that can pass e^-16.

    A predicted state above e^-16 must receive mass from a parent state above
    e^-16 / (2 S): the others hold at most e^-16 / 2 together. Each candidate's prediction is
    the same row sum ``_apply_B`` computes, so the states kept are exactly pymdp's.

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
        return _gain_from_states(km, rows, vals, count, qo, touched)
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
    value = _gain_from_states(km, rows, vals, count, qo, touched)
    memo_key[home, 0] = count + 1
    for i in range(count):
        memo_key[home, 1 + i] = rows[i]
        memo_val[home, i] = vals[i]
    memo_val[home, MEMO_KEY] = value
    return value


@njit(cache=True, inline="always")
def policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                         n_big, rows, vals, memo_key, memo_val, util, G):
    """Tree walk for one factor with sparse B: a node is valued from its parent's belief.

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
        n_big[0] = _big_states(post, 0, S, tau, big, 0)
    if kc.use_utility:
        _dots_all(post, 0, km.utility_B[0], S, util, 0)
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
            value += _sparse_info_gain(km, u, parent, p_off, big, d * S, n_big[d], seen,
                                       stamp[0], qo, touched, rows, vals, memo_key, memo_val)
        if d < min(horizon, kc.max_depth) - 1:
            _apply_B(km, 0, u, parent, p_off, qdepth, d * S)
            if kc.use_states_info_gain:
                n_big[d + 1] = _big_states(qdepth, d * S, S, tau, big, (d + 1) * S)
            if kc.use_utility:
                _dots_all(qdepth, d * S, km.utility_B[d + 1], S, util, (d + 1) * U)
        gacc[d] = value if d == 0 else gacc[d - 1] + value
        gnode[k] = gacc[d]
    for p in range(G.shape[0]):
        G[p] = gnode[km.leaf_of_policy[p]]


@njit(cache=True, inline="always")
def _policy_posterior(km, kc, G, qpi):
    n = G.shape[0]
    for p in range(n):
        qpi[p] = G[p] * kc.gamma + km.lnE[p]
    _softmax_into(qpi, qpi, 0, n)


@njit(cache=True)
def _draw(p, n, u):
    acc = 0.0
    for k in range(n - 1):
        acc += p[k]
        if u < acc:
            return k
    return n - 1


@njit(cache=True, inline="always")
def select_action_one(km, kc, qpi, marg, seed, agent_id, tick, out_row):
    """Marginal (or full-policy) action selection, deterministic or stochastic."""
    n_factors = km.num_states.shape[0]
    n_pol = qpi.shape[0]
    if kc.full_sampling:
        if kc.stochastic:
            for p in range(n_pol):
                marg[p] = np.log(qpi[p] + EPS) * kc.alpha
            _softmax_into(marg, marg, 0, n_pol)
            best = _draw(marg, n_pol, uniform(seed, agent_id, tick, 0))
        else:
            best = 0
            for p in range(1, n_pol):
                if qpi[p] > qpi[best]:
                    best = p
        for f in range(n_factors):
            out_row[f] = km.first_action[best, f]
        return
    for f in range(n_factors):
        n_u = km.num_controls[f]
        for u in range(n_u):
            marg[u] = 0.0
        for p in range(n_pol):
            marg[km.first_action[p, f]] += qpi[p]
        total = 0.0
        for u in range(n_u):
            total += marg[u]
        for u in range(n_u):
            marg[u] /= total
        if kc.stochastic:
            for u in range(n_u):
                marg[u] = np.log(marg[u] + EPS) * kc.alpha
            _softmax_into(marg, marg, 0, n_u)
            out_row[f] = _draw(marg, n_u, uniform(seed, agent_id, tick, f))
        else:
            best = 0
            for u in range(1, n_u):
                if marg[u] > marg[best]:
                    best = u
            out_row[f] = best


# ------------------------------------------------------------------------------------ batch
@njit(cache=True, inline="always")
def _scratch_views(fs, layout_sizes):
    s_tot, n_joint, qdepth_n, horizon, n_nodes, n_pol, n_jo, max_u = layout_sizes
    o = 0
    prior = fs[o:o + s_tot]
    o += s_tot
    post = fs[o:o + s_tot]
    o += s_tot
    lnprior = fs[o:o + s_tot]
    o += s_tot
    qL = fs[o:o + s_tot]
    o += s_tot
    qtmp = fs[o:o + s_tot]
    o += s_tot
    lnL = fs[o:o + n_joint]
    o += n_joint
    qj = fs[o:o + n_joint]
    o += n_joint
    qdepth = fs[o:o + qdepth_n]
    o += qdepth_n
    gacc = fs[o:o + horizon]
    o += horizon
    gnode = fs[o:o + n_nodes]
    o += n_nodes
    G = fs[o:o + n_pol]
    o += n_pol
    qpi = fs[o:o + n_pol]
    o += n_pol
    qo = fs[o:o + n_jo]
    o += n_jo
    marg = fs[o:o + max(max_u, n_pol)]
    return prior, post, lnprior, qL, qtmp, lnL, qj, qdepth, gacc, gnode, G, qpi, qo, marg


@njit(cache=True, inline="always")
def scratch_views_end(layout_sizes):
    """Where the regions ``_scratch_views`` carves out end (the rest of a row is free)."""
    s_tot, n_joint, qdepth_n, horizon, n_nodes, n_pol, n_jo, max_u = layout_sizes
    return (5 * s_tot + 2 * n_joint + qdepth_n + horizon + n_nodes + 2 * n_pol + n_jo
            + max(max_u, n_pol))


def scratch_sizes(layout: ModelLayout) -> tuple[int, ...]:
    """The sizes ``_scratch_views`` carves a thread's scratch row into."""
    return (layout.state_size, layout.n_joint, layout.policy_len * layout.state_size,
            layout.policy_len, layout.tree.n_nodes, layout.n_policies, layout.n_joint_obs,
            int(layout.num_controls.max()))


def scratch_int_size(layout: ModelLayout) -> int:
    """Int64 scratch of one thread: touched outcomes, then (one sparse factor) the seen marks,
    a stamp, the above-threshold state lists and counts per tree level and the information-gain
    memo keys; the row ends with the first-step memo (:func:`first_memo_ints`)."""
    s = layout.state_size
    return (layout.n_joint_obs + s + 1 + layout.policy_len * s + layout.policy_len + s
            + MEMO_SLOTS * (1 + MEMO_KEY) + first_memo_ints(layout))


def scratch_float_size(layout: ModelLayout) -> int:
    """Float64 scratch of one thread: ``_scratch_views``' regions, the first-step memo's
    results, then (from the row's end) the sparse path's utilities, values and memo."""
    s = scratch_sizes(layout)
    return (5 * s[0] + 2 * s[1] + s[2] + s[3] + s[4] + 2 * s[5] + s[6] + max(s[7], s[5])
            + first_slots(s[0], s[5]) * (s[0] + 2 * s[5]) + s[3] * s[7] + s[0]
            + MEMO_SLOTS * (MEMO_KEY + 1))


@njit(cache=True, inline="always")
def _first_step_slot(obs_row, keys):
    """The first-step memo slot of an observation: the slot holding it, an empty slot, or -1
    when the probed slots hold other observations. ``keys[slot] = (filled, obs...)``."""
    n_slots = keys.shape[0]
    n_mod = obs_row.shape[0]
    h = np.uint64(n_mod)
    for m in range(n_mod):
        h = h * np.uint64(1000003) + np.uint64(obs_row[m]) * np.uint64(2654435761)
    home = np.int64(h % np.uint64(n_slots))
    for probe in range(MEMO_PROBES):
        slot = (home + probe) % n_slots
        if keys[slot, 0] == 0:
            return slot
        same = True
        for m in range(n_mod):
            if keys[slot, 1 + m] != obs_row[m]:
                same = False
                break
        if same:
            return slot
    return -1


@njit(cache=True, inline="always")
def _first_memo(fs, iscratch, sizes, n_mod):
    """The first-step memo's views in a thread's scratch: keys ``(slots, 1 + n_mod)`` (int)
    and values ``(slots, S + 2P)`` (posterior, G, q(pi) in float64)."""
    s_tot, n_pol = sizes[0], sizes[5]
    n_slots = first_slots(s_tot, n_pol)
    width = s_tot + 2 * n_pol
    v0 = scratch_views_end(sizes)
    values = fs[v0:v0 + n_slots * width].reshape((n_slots, width))
    k0 = iscratch.shape[0] - 1 - n_slots * (1 + n_mod)
    keys = iscratch[k0:iscratch.shape[0] - 1].reshape((n_slots, 1 + n_mod))
    return keys, values


@njit(cache=True, inline="always")
def _sparse_views(km, fs, iscratch, sizes):
    """The one-sparse-factor path's regions of a thread's scratch (seen marks, stamp, the
    above-threshold state lists and counts, utilities, values, the information-gain memo);
    empty views for other models."""
    if km.num_states.shape[0] == 1 and km.B_sparse[0]:
        S = km.num_states[0]
        n_jo = sizes[6]
        horizon = km.utility.shape[0]
        n_memo = MEMO_SLOTS
        n_util = horizon * sizes[7]
        f_end = fs.shape[0] - S - MEMO_SLOTS * (MEMO_KEY + 1)
    else:
        S = n_jo = horizon = n_memo = n_util = f_end = 0
    o = n_jo + S + 1 + horizon * S
    m0 = o + horizon + S
    memo_key = iscratch[m0:m0 + n_memo * (1 + MEMO_KEY)].reshape((n_memo, 1 + MEMO_KEY))
    memo_val = fs[f_end + S:f_end + S + n_memo * (MEMO_KEY + 1)].reshape(
        (n_memo, MEMO_KEY + 1))
    return (iscratch[n_jo:n_jo + S], iscratch[n_jo + S:n_jo + S + 1],
            iscratch[n_jo + S + 1:o], iscratch[o:o + horizon],
            iscratch[o + horizon:o + horizon + S], fs[f_end:f_end + S], memo_key, memo_val,
            fs[f_end - n_util:f_end])


@njit(cache=True, inline="always")
def _step_agent(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                actions_out, seed, tick, fs, iscratch, sizes, num_iter, views, sparse):
    """One agent's step; ``views`` and ``sparse`` are the thread's scratch regions
    (:func:`_scratch_views`, :func:`_sparse_views`), made once per block of agents."""
    prior, post, lnprior, qL, qtmp, lnL, qj, qdepth, gacc, gnode, G, qpi, qo, marg = views
    touched = iscratch
    n_factors = km.num_states.shape[0]
    s_tot = km.state_offset[-1]
    n_pol = G.shape[0]
    # An agent at its episode's first step starts from D, so its posterior, G and q(pi) are a
    # function of its observation alone (for this model and kernel config): they are
    # remembered per thread and reused; only the action draw, keyed by agent id, is its own.
    first_slot = -1
    if not started[i]:
        keys, values = _first_memo(fs, iscratch, sizes, obs.shape[1])
        first_slot = _first_step_slot(obs[i], keys)
        if first_slot >= 0 and keys[first_slot, 0] != 0:
            row = values[first_slot]
            for s in range(s_tot):
                post[s] = row[s]
            for p in range(n_pol):
                G[p] = row[s_tot + p]
                qpi[p] = row[s_tot + n_pol + p]
            _finish_step(km, kc, i, agent_id, qs, prev_action, started, q_pi_out, G_out,
                         actions_out, seed, tick, post, G, qpi, marg)
            return
    if started[i]:
        for f in range(n_factors):
            _apply_B(km, f, prev_action[i, f], qs[i], km.state_offset[f], prior,
                     km.state_offset[f])
    else:
        for s in range(s_tot):
            prior[s] = km.D_flat[s]
    infer_states_one(km, kc, km.A_flat, obs[i], prior, post, lnprior, qL, qtmp, lnL, qj,
                     num_iter)
    if n_factors == 1 and km.B_sparse[0]:
        seen, stamp, big, n_big, rows, vals, memo_key, memo_val, util = sparse
        policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                             n_big, rows, vals, memo_key, memo_val, util, G)
    else:
        policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G)
    _policy_posterior(km, kc, G, qpi)
    if first_slot >= 0:
        keys, values = _first_memo(fs, iscratch, sizes, obs.shape[1])
        keys[first_slot, 0] = 1
        for m in range(obs.shape[1]):
            keys[first_slot, 1 + m] = obs[i, m]
        row = values[first_slot]
        for s in range(s_tot):
            row[s] = post[s]
        for p in range(n_pol):
            row[s_tot + p] = G[p]
            row[s_tot + n_pol + p] = qpi[p]
    _finish_step(km, kc, i, agent_id, qs, prev_action, started, q_pi_out, G_out, actions_out,
                 seed, tick, post, G, qpi, marg)


@njit(cache=True, inline="always")
def _finish_step(km, kc, i, agent_id, qs, prev_action, started, q_pi_out, G_out, actions_out,
                 seed, tick, post, G, qpi, marg):
    """Select agent ``i``'s action and store its posterior, G and q(pi)."""
    select_action_one(km, kc, qpi, marg, seed, agent_id, tick, actions_out[i])
    for s in range(post.shape[0]):
        qs[i, s] = post[s]
    for p in range(G.shape[0]):
        G_out[i, p] = G[p]
        q_pi_out[i, p] = qpi[p]
    for f in range(km.num_states.shape[0]):
        prev_action[i, f] = actions_out[i, f]
    started[i] = 1


@njit(cache=True, parallel=True)
def step_agents(km, kc, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
                actions_out, seed, tick, fscratch, iscratch, sizes, num_iter, memo_token):
    """One full step for every agent ``i`` (rows of the per-agent arrays), in parallel.

    ``agent_ids[i]`` keys the random stream; scratch rows are taken by thread id. Agents at
    their episode's first step reuse the results of an earlier agent that started on the same
    observation (``_step_agent``): the scratch remembers them across calls for as long as
    ``memo_token`` stays the same, so a caller gives each (model, kernel config) it steps with
    the same scratch its own token (an int > 0). A new token clears the thread's scratch
    (both memos, and what another layout left where this one expects zeros) before use. Use it with
    ``numba.set_num_threads(1)`` for one thread too: a plain loop over the same body ran 2x
    slower (Numba reference-counts the model arrays per agent there, not in a parallel body).
    """
    n = obs.shape[0]
    last = iscratch.shape[1] - 1
    for t in range(iscratch.shape[0]):
        if iscratch[t, last] != memo_token:
            for k in range(last):
                iscratch[t, k] = 0
            for k in range(fscratch.shape[1]):
                fscratch[t, k] = 0.0
            iscratch[t, last] = memo_token
    # one block of agents per thread: the scratch views are made once per block, not per agent
    blocks = min(n, fscratch.shape[0])
    for b in prange(blocks):
        tid = numba.get_thread_id()
        fs = fscratch[tid]
        its = iscratch[tid]
        views = _scratch_views(fs, sizes)
        sparse = _sparse_views(km, fs, its, sizes)
        for i in range(b * n // blocks, (b + 1) * n // blocks):
            _step_agent(km, kc, i, agent_ids[i], obs, qs, prev_action, started, q_pi_out,
                        G_out, actions_out, seed, tick, fs, its, sizes, num_iter, views,
                        sparse)


@njit(cache=True)
def first_bad_observation(obs, num_obs):
    """Flat index of the first observation out of range (or -1): checked before any state moves."""
    n, n_mod = obs.shape
    for i in range(n):
        for m in range(n_mod):
            o = obs[i, m]
            if o < 0 or o >= num_obs[m]:
                return i * n_mod + m
    return -1
