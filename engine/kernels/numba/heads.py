"""The per-step tables of the multi-factor walk (``expected_free_energy.policy_values_heads``).

When the last factors of a model (the tail: ``scratch.head_factors``) take one action at every
node of a depth and move with each other only, their marginals at step ``d`` are the same at
every node of that depth. A node's joint belief is then its head factors' joint belief times
the tail's, and what is linear in it (the utility, the ambiguity, the predicted outcome) is
the head's belief against a table per head state, made once per step and agent here.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.stages import apply_B, expand_into


@njit(cache=True, inline="always")
def product_into(km, q, q_off, f0, f1, out):
    """out = the joint belief of factors ``f0 .. f1 - 1`` of the flat belief ``q[q_off:]``
    (first factor slowest), as ``stages.expand_into``."""
    expand_into(km, km.num_states, False, f0, f1, q, q_off, out, 0)


@njit(cache=True, inline="always")
def predict_tail(km, h, d, post, qdepth):
    """The tail factors' marginals at step ``d`` into ``qdepth``'s slot ``d`` (their action
    at that depth is node ``d``'s)."""
    s_tot = km.state_offset[-1]
    for f in range(h, km.num_states.shape[0]):
        u = km.node_action[d, f]
        dst = d * s_tot + km.state_offset[f]
        if d == 0:
            apply_B(km, f, u, post, km.state_offset[f], qdepth, dst)
        else:
            apply_B(km, f, u, qdepth, dst - s_tot, qdepth, dst)


@njit(cache=True, inline="always")
def tail_tables(km, kc, d, heads, qdepth, qo, touched):
    """Step ``d``'s tables from the tail's marginals in ``qdepth``'s slot ``d``: the tail's
    joint belief ``R`` and its smallest positive and largest entries; per head state ``i``
    the utility and ambiguity summed over the tail (``sum_r R[r] x[i * n_tail + r]``) and,
    where the gain uses them, the predicted outcome (dense rows, or the sparse rows' union of
    outcomes; ``qo`` and ``touched`` serve as marks and are left zeroed)."""
    h, n_head, n_tail, n_table, tail, bounds, utility, ambiguity, table, _, _, ptr, idx = heads
    F = km.num_states.shape[0]
    R = tail[d * n_tail:(d + 1) * n_tail]
    product_into(km, qdepth, d * km.state_offset[-1], h, F, R)
    lo = np.inf
    hi = 0.0
    for r in range(n_tail):
        v = R[r]
        if v > 0.0 and v < lo:
            lo = v
        hi = max(hi, v)
    bounds[2 * d] = lo
    bounds[2 * d + 1] = hi
    if kc.use_utility:
        for i in range(n_head):
            acc = 0.0
            for r in range(n_tail):
                acc += km.utility[d, i * n_tail + r] * R[r]
            utility[d * n_head + i] = acc
    if not kc.use_states_info_gain or n_table == 0:
        return
    for i in range(n_head):
        acc = 0.0
        for r in range(n_tail):
            acc += km.ambiguity[i * n_tail + r] * R[r]
        ambiguity[d * n_head + i] = acc
    P = table[d * n_table:(d + 1) * n_table]
    if km.po_dense.shape[0]:
        n = km.po_dense.shape[1]
        for i in range(n_head):
            row = P[i * n:(i + 1) * n]
            for o in range(n):
                row[o] = 0.0
            for r in range(n_tail):
                w = R[r]
                if w != 0.0:
                    src = km.po_dense[i * n_tail + r]
                    for o in range(n):
                        row[o] += w * src[o]
        return
    count = 0
    for i in range(n_head):
        ptr[i] = count
        n_t = 0
        for r in range(n_tail):                 # the row's outcomes, in order of first sight
            j = i * n_tail + r
            for p in range(km.po_ptr[j], km.po_ptr[j + 1]):
                o = km.po_idx[p]
                if qo[o] == 0.0:
                    qo[o] = 1.0
                    touched[n_t] = o
                    n_t += 1
        for t in range(n_t):
            qo[touched[t]] = 0.0
        for r in range(n_tail):
            w = R[r]
            j = i * n_tail + r
            for p in range(km.po_ptr[j], km.po_ptr[j + 1]):
                qo[km.po_idx[p]] += w * km.po_val[p]
        for t in range(n_t):
            o = touched[t]
            idx[count] = o
            P[count] = qo[o]
            qo[o] = 0.0
            count += 1
        # inside the loop: in a prange body Numba dropped this store when it followed the loop
        ptr[i + 1] = count
