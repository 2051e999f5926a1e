"""Per-thread scratch of the Numba step: the sizes of a thread's float64 and int64 rows, the
views carved out of them, and the two memos kept there (first-step results and the sparse
walk's information gains)."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.numba.stages import n_listed
from engine.model.constants import LANE_WALK_FLOATS, LANES
from engine.model.layout import ModelLayout
from engine.model.shared_tail import head_factors

MEMO_SLOTS = 256          # information-gain memo entries per thread (a power of two)
MEMO_KEY = 8             # predicted beliefs with more states above e^-16 are not memoised
MEMO_PROBES = 4
FIRST_MEMO_FLOATS = 65536   # the first-step memo's stored results per thread (512 KiB)
HEAD_TABLE_FLOATS = 1 << 18  # the multi-factor walk's outcome tables per thread, at most
LANE_SCALARS = 9         # per-lane scalars of the lane state inference
LANE_WALK_SCALARS = 5    # per-lane scalars of the lane walk
#: With pymdp 0.0.7.1's cut, a head state whose joint states straddle it in any lane runs them
#: for every lane; past this many head-table entries a step the one-agent walk's skips win
#: (measured: docs/architecture.md, "Agents in lanes").
LANE_CUT_TABLE = 512


@njit(cache=True, inline="always")
def head_sizes(num_states, node_depth, node_action, B_deps, n_dense_rows, n_jo, nnz, split,
               horizon):
    """``(h, n_head, n_tail, n_table)`` of the multi-factor walk (:func:`head_factors`): the
    joint states of the head and of the tail factors, and the floats of one step's outcome
    table per head state (0: the gain goes through the joint belief); ``h`` is the number of
    factors when the walk does not apply."""
    F = num_states.shape[0]
    h = head_factors(num_states, node_depth, node_action, B_deps) if F > 1 else F
    if h == F:
        return F, 0, 0, 0
    n_head = 1
    for f in range(h):
        n_head *= num_states[f]
    n_tail = 1
    for f in range(h, F):
        n_tail *= num_states[f]
    n_table = 0
    if not split:
        n_table = n_head * n_jo if n_dense_rows else nnz
        if horizon * n_table > HEAD_TABLE_FLOATS:
            n_table = 0
    return h, n_head, n_tail, n_table


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
def scratch_views(fs, layout_sizes):
    """The float64 regions of one thread's step, in order, from the start of row ``fs``."""
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
    """Where the regions ``scratch_views`` carves out end (the rest of a row is free)."""
    s_tot, n_joint, qdepth_n, horizon, n_nodes, n_pol, n_jo, max_u = layout_sizes
    return (5 * s_tot + 2 * n_joint + qdepth_n + horizon + n_nodes + 2 * n_pol + n_jo
            + max(max_u, n_pol))


def scratch_sizes(layout: ModelLayout) -> tuple[int, ...]:
    """The sizes ``scratch_views`` carves a thread's scratch row into."""
    outcomes = layout.n_joint_obs + layout.pf_rest.shape[1]      # split path: + its constants
    return (layout.state_size, layout.n_joint, layout.policy_len * layout.state_size,
            layout.policy_len, layout.tree.n_nodes, layout.n_policies, outcomes,
            int(layout.num_controls.max()))


def scratch_int_size(layout: ModelLayout) -> int:
    """Int64 scratch of one thread: touched outcomes, then (one sparse factor) the seen marks,
    a stamp, the above-threshold state lists and counts per tree level and the information-gain
    memo keys, then the multi-factor walk's (:func:`head_scratch`); the row ends with the
    first-step memo (:func:`first_memo_ints`)."""
    return (scratch_int_size_of(scratch_sizes(layout), len(layout.num_obs))
            + head_scratch(layout)[1])


def scratch_int_size_of(sizes: tuple[int, ...], n_modalities: int) -> int:
    """:func:`scratch_int_size` from :func:`scratch_sizes` and the number of modalities
    (memory estimates use it before any layout is built)."""
    s, n_jo, horizon, n_pol = sizes[0], sizes[6], sizes[3], sizes[5]
    return (n_jo + s + 1 + horizon * s + horizon + s + MEMO_SLOTS * (1 + MEMO_KEY)
            + 1 + first_slots.py_func(s, n_pol) * (1 + n_modalities))


def scratch_float_size(layout: ModelLayout) -> int:
    """Float64 scratch of one thread: ``scratch_views``' regions, the first-step memo's
    results, the lane state inference's (:func:`lane_views`), then (from the row's end) the
    sparse path's utilities, values and memo, or the multi-factor walk's tables
    (:func:`head_scratch`)."""
    return (scratch_float_size_of(scratch_sizes(layout)) + dense_children_floats(layout)
            + head_scratch(layout)[0] + layout_lane_floats(layout)
            + layout_lane_walk_floats(layout))


def scratch_float_size_of(s: tuple[int, ...]) -> int:
    """:func:`scratch_float_size` from :func:`scratch_sizes`, without the dense children's
    regions (:func:`dense_children_floats`)."""
    return (5 * s[0] + 2 * s[1] + s[2] + s[3] + s[4] + 2 * s[5] + s[6] + max(s[7], s[5])
            + first_slots.py_func(s[0], s[5]) * (s[0] + 2 * s[5]) + s[3] * s[7] + s[0]
            + MEMO_SLOTS * (MEMO_KEY + 1))


def head_layout(layout: ModelLayout) -> tuple[int, int, int, int]:
    """:func:`head_sizes` of a layout."""
    tree = layout.tree
    return head_sizes.py_func(layout.num_states, tree.depth, tree.action, layout.B_deps,
                              layout.po_dense.shape[0], layout.n_joint_obs, layout.po_val.shape[0],
                              layout.pf_const.shape[0] > 0, layout.policy_len)


def head_scratch(layout: ModelLayout) -> tuple[int, int]:
    """Float64 and int64 scratch of the multi-factor walk's regions (``head_views``)."""
    return head_counts(*head_layout(layout), layout.policy_len, layout.po_dense.shape[0] > 0)


@njit(cache=True, inline="always")
def head_counts(h, n_head, n_tail, n_table, horizon, dense):
    """Floats and ints of ``head_views``' regions."""
    if n_head == 0:
        return 0, 0
    n_int = 0 if dense or n_table == 0 else n_head + 1 + n_table
    return horizon * (n_tail + 2 + 2 * n_head + n_table) + 2 * n_head, n_int


def dense_children_floats(layout: ModelLayout) -> int:
    """Float64 scratch of the one-sparse-factor walk with a dense outcome table: every
    action's predicted belief and joint outcome, and the gains per tree level and action."""
    if layout.n_factors != 1 or not layout.B_sparse[0] or layout.gain_path == "sparse":
        return 0
    n_u = int(layout.num_controls.max())
    return n_u * (layout.state_size + scratch_sizes(layout)[6] + layout.policy_len)


@njit(cache=True, inline="always")
def first_step_slot(obs_row, keys):
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
def first_memo(fs, iscratch, sizes, n_mod):
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
def head_views(km, fs, iscratch, sizes):
    """The multi-factor walk's sizes (:func:`head_sizes`) and regions of a thread's scratch:
    per step the tail's joint belief, its smallest positive and largest entries, the utility
    and ambiguity per head state and the outcome table; the head's joint belief and row
    weights; the sparse table's row pointers and outcomes. Empty where the walk does not
    apply. Floats from the row's end, ints after the one-sparse-factor path's."""
    horizon = sizes[3]
    dense = km.po_dense.shape[0] > 0
    h, n_head, n_tail, n_table = head_sizes(
        km.num_states, km.node_depth, km.node_action, km.B_deps, km.po_dense.shape[0],
        sizes[6] - km.pf_rest.shape[1], km.po_val.shape[0], km.pf_const.shape[0] > 0, horizon)
    n_float, n_int = head_counts(h, n_head, n_tail, n_table, horizon, dense)
    o = fs.shape[0] - n_float
    tail = fs[o:o + horizon * n_tail]
    o += horizon * n_tail
    bounds = fs[o:o + (2 * horizon if n_float else 0)]
    o += bounds.shape[0]
    utility = fs[o:o + horizon * n_head]
    o += horizon * n_head
    ambiguity = fs[o:o + horizon * n_head]
    o += horizon * n_head
    table = fs[o:o + horizon * n_table]
    o += horizon * n_table
    q_head = fs[o:o + n_head]
    weights = fs[o + n_head:o + 2 * n_head]
    s, n_jo = sizes[0], sizes[6]
    i0 = n_jo + s + 1 + horizon * s + horizon + s + MEMO_SLOTS * (1 + MEMO_KEY)
    n_ptr = n_head + 1 if n_int else 0
    return (h, n_head, n_tail, n_table, tail, bounds, utility, ambiguity, table, q_head,
            weights, iscratch[i0:i0 + n_ptr], iscratch[i0 + n_ptr:i0 + n_int])


@njit(cache=True, inline="always")
def sparse_views(km, fs, iscratch, sizes):
    """Every walk's regions of a thread's scratch: :func:`single_views`' items, then the
    multi-factor walk's (:func:`head_views`) as the last item."""
    return single_views(km, fs, iscratch, sizes) + (head_views(km, fs, iscratch, sizes),)


@njit(cache=True, inline="always")
def single_views(km, fs, iscratch, sizes):
    """The one-sparse-factor path's regions of a thread's scratch (seen marks, stamp, the
    above-threshold state lists and counts, utilities, values, the information-gain memo,
    and with a dense outcome table the children's beliefs, outcomes and gains); empty views
    for other models."""
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
    d_end = f_end - n_util
    n_dq = n_dqo = n_gain = 0
    if km.num_states.shape[0] == 1 and km.B_sparse[0] and (km.po_dense.shape[0]
                                                            or km.pf_const.shape[0]):
        n_dq = sizes[7] * S
        n_dqo = sizes[7] * n_jo
        n_gain = horizon * sizes[7]
    d0 = d_end - n_dq - n_dqo - n_gain
    return (iscratch[n_jo:n_jo + S], iscratch[n_jo + S:n_jo + S + 1],
            iscratch[n_jo + S + 1:o], iscratch[o:o + horizon],
            iscratch[o + horizon:o + horizon + S], fs[f_end:f_end + S], memo_key, memo_val,
            fs[f_end - n_util:f_end], fs[d0:d0 + n_dq], fs[d0 + n_dq:d0 + n_dq + n_dqo],
            fs[d0 + n_dq + n_dqo:d_end])


@njit(cache=True, inline="always")
def lane_table_rows(num_states, ln_floor, LL_deps, LL_cols, n_joint):
    """Rows of the lane state inference's log-likelihood table: pymdp 0.0.7.1's joint one,
    or pymdp 1.x's groups over several factors."""
    if ln_floor[0] == 0.0:
        return n_joint
    rows = 0
    for g in range(LL_cols.shape[0]):
        if n_listed(LL_deps, g) > 1:
            rows += LL_cols[g]
    return rows


@njit(cache=True, inline="always")
def lane_floats(num_states, ln_floor, LL_deps, LL_cols, n_joint):
    """Float64 scratch of the lane state inference (none for one factor): five beliefs, the
    log-likelihood table, expansion weights and the per-lane scalars, ``LANES`` wide."""
    if num_states.shape[0] < 2:
        return 0
    s_tot = 0
    for f in range(num_states.shape[0]):
        s_tot += num_states[f]
    return LANES * (5 * s_tot + lane_table_rows(num_states, ln_floor, LL_deps, LL_cols,
                                                n_joint) + n_joint + LANE_SCALARS)


def layout_lane_floats(layout: ModelLayout) -> int:
    """:func:`lane_floats` of a layout."""
    return int(lane_floats.py_func(layout.num_states, layout.ln_floor, layout.LL_deps,
                                   layout.LL_cols, layout.n_joint))


@njit(cache=True, inline="always")
def lane_views(km, fs, sizes):
    """``(prior, post, base, qL, qtmp, table, weights, scalars)``, each ``(entries, LANES)``:
    the lane state inference's regions, right after the first-step memo's results."""
    s_tot, n_joint, n_pol = sizes[0], sizes[1], sizes[5]
    o = scratch_views_end(sizes) + first_slots(s_tot, n_pol) * (s_tot + 2 * n_pol)
    n_tab = lane_table_rows(km.num_states, km.ln_floor, km.LL_deps, km.LL_cols, n_joint)
    if km.num_states.shape[0] < 2:
        s_tot = n_tab = n_joint = 0
    rows = (s_tot, s_tot, s_tot, s_tot, s_tot, n_tab, n_joint, LANE_SCALARS)
    prior = fs[o:o + rows[0] * LANES].reshape((rows[0], LANES))
    o += rows[0] * LANES
    post = fs[o:o + rows[1] * LANES].reshape((rows[1], LANES))
    o += rows[1] * LANES
    base = fs[o:o + rows[2] * LANES].reshape((rows[2], LANES))
    o += rows[2] * LANES
    qL = fs[o:o + rows[3] * LANES].reshape((rows[3], LANES))
    o += rows[3] * LANES
    qtmp = fs[o:o + rows[4] * LANES].reshape((rows[4], LANES))
    o += rows[4] * LANES
    table = fs[o:o + rows[5] * LANES].reshape((rows[5], LANES))
    o += rows[5] * LANES
    weights = fs[o:o + rows[6] * LANES].reshape((rows[6], LANES))
    o += rows[6] * LANES
    scalars = fs[o:o + rows[7] * LANES].reshape((rows[7], LANES))
    return prior, post, base, qL, qtmp, table, weights, scalars


@njit(cache=True, inline="always")
def lane_walk_rows(num_states, node_depth, node_action, B_deps, po_dense, gain_cut, n_jo,
                   s_tot, n_nodes, n_pol, horizon):
    """Rows (each ``LANES`` floats) of the lane walk's scratch (``lane_walk.lane_walk_views``),
    or 0 where the model walks one agent at a time: one factor, no shared tail, an outcome
    table read sparsely or split, lanes over :data:`LANE_WALK_FLOATS`, or pymdp 0.0.7.1's cut
    over a head table of more than :data:`LANE_CUT_TABLE` entries a step."""
    if num_states.shape[0] < 2 or po_dense.shape[0] == 0:
        return 0
    h, n_head, n_tail, n_table = head_sizes(num_states, node_depth, node_action, B_deps,
                                            po_dense.shape[0], n_jo, 0, False, horizon)
    if n_head == 0 or n_table == 0 or (gain_cut[0] > 0.0 and n_head * n_jo > LANE_CUT_TABLE):
        return 0
    rows = (horizon * (s_tot + n_tail + 2 + 2 * n_head + n_table + 1) + 2 * n_head + n_jo
            + n_nodes + n_pol + LANE_WALK_SCALARS)
    return rows if rows * LANES <= LANE_WALK_FLOATS else 0


def layout_lane_walk_floats(layout: ModelLayout) -> int:
    """The lane walk's float64 scratch of a layout (:func:`lane_walk_rows`)."""
    tree = layout.tree
    sizes = scratch_sizes(layout)
    return LANES * int(lane_walk_rows.py_func(
        layout.num_states, tree.depth, tree.action, layout.B_deps, layout.po_dense,
        layout.gain_cut, sizes[6],
        sizes[0], sizes[4], sizes[5], sizes[3]))


@njit(cache=True, inline="always")
def lane_views_end(km, sizes):
    """Where :func:`lane_views`' regions end (the lane walk's start)."""
    s_tot, n_joint, n_pol = sizes[0], sizes[1], sizes[5]
    o = scratch_views_end(sizes) + first_slots(s_tot, n_pol) * (s_tot + 2 * n_pol)
    if km.num_states.shape[0] < 2:
        return o
    n_tab = lane_table_rows(km.num_states, km.ln_floor, km.LL_deps, km.LL_cols, n_joint)
    return o + LANES * (5 * s_tot + n_tab + n_joint + LANE_SCALARS)
