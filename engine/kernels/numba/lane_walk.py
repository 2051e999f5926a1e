"""The shared-tail policy walk (``expected_free_energy.policy_values_heads``) for
:data:`LANES` agents at once, with the agent innermost: the walk of a several-factor model
whose gain reads a dense outcome table, so that its short loops over states and outcomes
vectorise across agents.

A lane does the one-agent walk's operations on its own numbers. pymdp 0.0.7.1's cut (a joint
state at or below e^-16 adds no gain) is a mask per lane: a masked term adds +0.0, which
leaves a sum's bits as skipping it does. The sums the one-agent walk reassociates (the
outcome entropy) are summed in order here, so a lane's G equals the one-agent walk's to
rounding; the tests hold them to 1e-12. Arrays are ``(entries, LANES)``;
``docs/architecture.md``, "Agents in lanes".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.lane_inference import expand_lanes
from engine.kernels.numba.scratch import LANE_WALK_SCALARS, LANES, head_sizes, lane_walk_rows
from engine.kernels.numba.stages import n_listed
from engine.kernels.numba.vector_math import vlog
from engine.model.constants import EPS

_VALUE, _AMB, _ENT, _CASE, _X = range(LANE_WALK_SCALARS)
"""Rows of the lane walk's per-lane scalars: a node's value, its ambiguity and outcome
entropy, the lane's case for the head state at hand and a joint state's weight."""


@njit(cache=True, inline="always")
def lane_walk_views(km, fs, o, sizes):
    """The lane walk's regions of a thread's scratch from float ``o``, each
    ``(entries, LANES)``: per step the predicted beliefs, the tail's joint belief, its
    smallest positive and largest entries, the utility and ambiguity per head state and the
    outcome table; the head's joint belief and row weights; the outcomes; the running and per
    node values, G and the per-lane scalars. Empty where ``scratch.lane_walk_rows`` is 0."""
    s_tot, horizon, n_nodes, n_pol, n_jo = sizes[0], sizes[3], sizes[4], sizes[5], sizes[6]
    rows = lane_walk_rows(km.num_states, km.node_depth, km.node_action, km.B_deps,
                          km.po_dense, km.gain_cut, n_jo, s_tot, n_nodes, n_pol, horizon)
    n_head = n_tail = n_table = n_scalars = 0
    if rows:
        _, n_head, n_tail, n_table = head_sizes(km.num_states, km.node_depth, km.node_action,
                                                km.B_deps, km.po_dense.shape[0], n_jo, 0,
                                                False, horizon)
        n_scalars = LANE_WALK_SCALARS
    else:
        s_tot = horizon = n_nodes = n_pol = n_jo = 0
    c = horizon * s_tot
    qdepth = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    c = horizon * n_tail
    tail = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    c = 2 * horizon
    bounds = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    c = horizon * n_head
    utility = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    ambiguity = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    c = horizon * n_table
    table = fs[o:o + c * LANES].reshape((c, LANES))
    o += c * LANES
    q_head = fs[o:o + n_head * LANES].reshape((n_head, LANES))
    o += n_head * LANES
    weights = fs[o:o + n_head * LANES].reshape((n_head, LANES))
    o += n_head * LANES
    qo = fs[o:o + n_jo * LANES].reshape((n_jo, LANES))
    o += n_jo * LANES
    gacc = fs[o:o + horizon * LANES].reshape((horizon, LANES))
    o += horizon * LANES
    gnode = fs[o:o + n_nodes * LANES].reshape((n_nodes, LANES))
    o += n_nodes * LANES
    G = fs[o:o + n_pol * LANES].reshape((n_pol, LANES))
    o += n_pol * LANES
    scalars = fs[o:o + n_scalars * LANES].reshape((n_scalars, LANES))
    return (qdepth, tail, bounds, utility, ambiguity, table, q_head, weights, qo, gacc, gnode,
            G, scalars)


@njit(cache=True, inline="always")
def _apply_B_lanes(km, f, u, src, src_off, dst, dst_off, nl):
    """:func:`stages.apply_B` in every lane (the same terms in the same order)."""
    S = km.num_states[f]
    for r in range(S):
        for ln in range(nl):
            dst[dst_off + r, ln] = 0.0
    if km.B_sparse[f] and km.B_det[f, u]:
        for c in range(S):
            r = km.Bd_row[f, u, c]
            v = km.Bd_val[f, u, c]
            for ln in range(nl):
                dst[dst_off + r, ln] += v * src[src_off + c, ln]
    elif km.B_sparse[f]:
        for r in range(S):
            for k in range(km.Bs_rowptr[f, u, r], km.Bs_rowptr[f, u, r + 1]):
                c = km.Bs_col[k]
                v = km.Bs_val[k]
                for ln in range(nl):
                    dst[dst_off + r, ln] += v * src[src_off + c, ln]
    elif km.B_deps[f, 0] != f or (km.B_deps.shape[1] > 1 and km.B_deps[f, 1] >= 0):
        _apply_B_dependent_lanes(km, f, u, src, src_off - km.state_offset[f], dst, dst_off,
                                 nl)
    else:
        base = km.B_offset[f] + u * S * S
        for r in range(S):
            row = base + r * S
            for c in range(S):
                v = km.Bt_flat[row + c]
                for ln in range(nl):
                    dst[dst_off + r, ln] += v * src[src_off + c, ln]


@njit(cache=True, inline="always")
def _apply_B_dependent_lanes(km, f, u, src, src_base, dst, dst_off, nl):
    """:func:`stages.apply_B_dependent` in every lane; a zero weight adds +0.0 where the
    one-agent stage skips the column."""
    S = km.num_states[f]
    K = (km.B_offset[f + 1] - km.B_offset[f]) // (km.num_controls[f] * S)
    base = km.B_offset[f] + u * S * K
    n_deps = n_listed(km.B_deps, f)
    for c in range(K):
        for ln in range(nl):
            rem = c
            w = 1.0
            for k in range(n_deps - 1, -1, -1):
                d = km.B_deps[f, k]
                digit = rem % km.num_states[d]
                rem //= km.num_states[d]
                w *= src[src_base + km.state_offset[d] + digit, ln]
            for r in range(S):
                dst[dst_off + r, ln] += km.Bt_flat[base + r * K + c] * w


@njit(cache=True, inline="always")
def _tail_tables_lanes(km, kc, d, h, n_head, n_tail, n_table, post, views, nl):
    """``heads.predict_tail`` and ``heads.tail_tables`` (a dense table) in every lane."""
    qdepth, tail, bounds, utility, ambiguity, table = views[:6]
    F = km.num_states.shape[0]
    s_tot = km.state_offset[-1]
    for f in range(h, F):
        dst = d * s_tot + km.state_offset[f]
        if d == 0:
            _apply_B_lanes(km, f, km.node_action[d, f], post, km.state_offset[f], qdepth, dst,
                           nl)
        else:
            _apply_B_lanes(km, f, km.node_action[d, f], qdepth, dst - s_tot, qdepth, dst, nl)
    t0 = d * n_tail
    # the factors themselves (listed=False: the deps argument is not read)
    expand_lanes(km.num_states, km.state_offset, km.num_states, False, h, F, qdepth, tail,
                 t0, nl, d * s_tot)
    for ln in range(nl):
        bounds[2 * d, ln] = np.inf
        bounds[2 * d + 1, ln] = 0.0
    for r in range(n_tail):
        for ln in range(nl):
            v = tail[t0 + r, ln]
            if v > 0.0 and v < bounds[2 * d, ln]:
                bounds[2 * d, ln] = v
            bounds[2 * d + 1, ln] = max(bounds[2 * d + 1, ln], v)
    if kc.use_utility:
        for i in range(n_head):
            for ln in range(nl):
                utility[d * n_head + i, ln] = 0.0
            for r in range(n_tail):
                x = km.utility[d, i * n_tail + r]
                for ln in range(nl):
                    utility[d * n_head + i, ln] += x * tail[t0 + r, ln]
    if not kc.use_states_info_gain:
        return
    n = km.po_dense.shape[1]
    for i in range(n_head):
        for ln in range(nl):
            ambiguity[d * n_head + i, ln] = 0.0
        for r in range(n_tail):
            x = km.ambiguity[i * n_tail + r]
            for ln in range(nl):
                ambiguity[d * n_head + i, ln] += x * tail[t0 + r, ln]
        p0 = d * n_table + i * n
        for o in range(n):
            for ln in range(nl):
                table[p0 + o, ln] = 0.0
        for r in range(n_tail):
            if not _any_nonzero(tail, t0 + r, nl):
                continue
            j = i * n_tail + r
            for o in range(n):
                x = km.po_dense[j, o]
                for ln in range(nl):
                    table[p0 + o, ln] += tail[t0 + r, ln] * x


@njit(cache=True, inline="always")
def _any_nonzero(x, row, nl):
    """Whether any of the lanes of ``x[row]`` is non-zero."""
    for ln in range(nl):
        if x[row, ln] != 0.0:
            return True
    return False


@njit(cache=True, inline="always")
def _gain_lanes(km, d, q, n_head, n_tail, n_table, views, nl):
    """``expected_free_energy.heads_gain`` (a dense table) in every lane, into the
    scalars' ``_AMB`` and ``_ENT`` rows; ``q`` is the head's joint belief."""
    tail, bounds, amb_t, table, weights, qo, scalars = (
        views[1], views[2], views[4], views[5], views[7], views[8], views[12])
    cut = km.gain_cut[0]
    n = km.po_dense.shape[1]
    r0 = d * n_tail
    t0 = d * n_table
    amb = scalars[_AMB]
    case = scalars[_CASE]
    x = scalars[_X]
    for ln in range(nl):
        amb[ln] = 0.0
    for i in range(n_head):
        some = False
        for ln in range(nl):
            v = q[i, ln]
            whole = v * bounds[2 * d, ln] > cut
            part = not whole and v * bounds[2 * d + 1, ln] > cut
            weights[i, ln] = v if whole else 0.0
            amb[ln] += v * amb_t[d * n_head + i, ln] if whole else 0.0
            case[ln] = 1.0 if part else 0.0
            some = some or part
        if not some:
            continue
        for r in range(n_tail):             # a head state whose joint states straddle the cut
            j = i * n_tail + r
            a = km.ambiguity[j]
            for ln in range(nl):
                qr = q[i, ln] * tail[r0 + r, ln]
                keep = case[ln] != 0.0 and qr > cut
                x[ln] = qr if keep else 0.0
                amb[ln] += qr * a if keep else 0.0
            for o in range(n):
                p = km.po_dense[j, o]
                for ln in range(nl):
                    qo[o, ln] += x[ln] * p
    for i in range(n_head):
        if not _any_nonzero(weights, i, nl):    # no lane reads the row: skip it, as one does
            continue
        b = t0 + i * n
        for o in range(n):
            for ln in range(nl):
                qo[o, ln] += weights[i, ln] * table[b + o, ln]
    ent = scalars[_ENT]
    for ln in range(nl):
        ent[ln] = 0.0
    for o in range(qo.shape[0]):
        for ln in range(nl):
            v = qo[o, ln]
            ent[ln] += v * vlog(v + EPS)
            qo[o, ln] = 0.0


@njit(cache=True, _nrt=False, error_model="numpy")
def policy_values_heads_lanes(km, kc, post, views, sizes, nl):
    """``expected_free_energy.policy_values_heads`` for the lanes ``0 .. nl - 1`` of the
    posteriors ``post`` (``(states, LANES)``); G is left in ``views``' twelfth array."""
    qdepth, q_head, gacc, gnode, G, scalars = (views[0], views[6], views[9], views[10],
                                              views[11], views[12])
    h, n_head, n_tail, n_table = head_sizes(km.num_states, km.node_depth, km.node_action,
                                            km.B_deps, km.po_dense.shape[0], sizes[6], 0,
                                            False, sizes[3])
    s_tot = km.state_offset[-1]
    n_depth = min(km.utility.shape[0], kc.max_depth)
    for d in range(n_depth):
        _tail_tables_lanes(km, kc, d, h, n_head, n_tail, n_table, post, views, nl)
    value = scalars[_VALUE]
    for k in range(km.node_depth.shape[0]):
        d = km.node_depth[k]
        if d >= kc.max_depth:                      # degraded horizon: value stops here
            for ln in range(nl):
                gacc[d, ln] = gacc[d - 1, ln]
                gnode[k, ln] = gacc[d, ln]
            continue
        dst = d * s_tot
        for f in range(h):
            if d == 0:
                _apply_B_lanes(km, f, km.node_action[k, f], post, km.state_offset[f], qdepth,
                               dst + km.state_offset[f], nl)
            else:
                _apply_B_lanes(km, f, km.node_action[k, f], qdepth,
                               dst - s_tot + km.state_offset[f], qdepth,
                               dst + km.state_offset[f], nl)
        expand_lanes(km.num_states, km.state_offset, km.num_states, False, 0, h, qdepth,
                     q_head, 0, nl, dst)
        for ln in range(nl):
            value[ln] = 0.0
        if kc.use_utility:
            for i in range(n_head):
                for ln in range(nl):
                    value[ln] += q_head[i, ln] * views[3][d * n_head + i, ln]
        if kc.use_states_info_gain:
            _gain_lanes(km, d, q_head, n_head, n_tail, n_table, views, nl)
            for ln in range(nl):
                value[ln] += scalars[_AMB, ln] - scalars[_ENT, ln]
        for ln in range(nl):
            gacc[d, ln] = value[ln] if d == 0 else gacc[d - 1, ln] + value[ln]
            gnode[k, ln] = gacc[d, ln]
    for p in range(G.shape[0]):
        for ln in range(nl):
            G[p, ln] = gnode[km.leaf_of_policy[p], ln]
