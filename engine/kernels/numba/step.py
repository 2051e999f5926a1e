"""The Numba step the runtime calls: the kernel's model and config tuples, one agent's step, the
parallel driver over agents (one compiled per policy walk), and the observation range check.

The scratch sizes the runtime allocates by (:mod:`engine.kernels.numba.scratch`) are importable
from here too, so this module is all the runtime needs.
"""

from __future__ import annotations

import functools
from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

from engine.kernels.numba.agent_step import (
    WALK_HEADS,
    WALK_SINGLE,
    WALK_TREE,
    step_agent,
    step_lanes,
)
from engine.kernels.numba.kernel_model import (
    KernelModel,
    KernelModelRef,
    kernel_model_ref,
    unpack,
)
from engine.kernels.numba.lane_walk import lane_walk_views
from engine.kernels.numba.scratch import (
    LANES,
    head_views,
    lane_views,
    lane_views_end,
    layout_lane_walk_floats,
    scratch_float_size,
    scratch_int_size,
    scratch_sizes,
    scratch_views,
    single_views,
)
from engine.model.layout import ModelLayout
from engine.model.shared_tail import head_factors

__all__ = [
    "WALK_HEADS", "WALK_SINGLE", "WALK_TREE", "KernelConfig", "KernelModel", "KernelModelRef",
    "describe_walk", "first_bad_observation", "kernel_config", "kernel_model", "kernel_model_from",
    "kernel_model_ref", "scratch_float_size", "scratch_int_size", "scratch_sizes",
    "serial_kernel", "step_kernel", "walk_of",
]

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
    (the degradation ladder's shorter horizon: deeper tree nodes are skipped). pymdp 1.x
    runs every fixed-point sweep: its ``dF_tol`` is -1, which no free-energy change is under.
    """
    return KernelConfig(
        float(config.gamma), float(config.alpha), bool(config.use_utility),
        bool(config.use_states_info_gain), config.action_selection == "stochastic",
        config.sampling_mode == "full", int(config.num_iter if num_iter is None else num_iter),
        float(config.dF), -1.0 if config.semantics == "pymdp1" else float(config.dF_tol),
        int(config.policy_len if max_depth is None else max_depth),
    )


# ------------------------------------------------------------------------------- the walks
def walk_of(km: KernelModel) -> int:
    """The walk a model's step takes (:data:`WALK_SINGLE`, :data:`WALK_HEADS` or
    :data:`WALK_TREE`)."""
    n_factors = km.num_states.shape[0]
    if n_factors == 1 and bool(km.B_sparse[0]):
        return WALK_SINGLE
    if km.F_sparse.shape[0]:
        return WALK_TREE
    if n_factors > 1 and head_factors.py_func(km.num_states, km.node_depth, km.node_action,
                                              km.B_deps) < n_factors:
        return WALK_HEADS
    return WALK_TREE


def describe_walk(layout: ModelLayout) -> str:
    """One line: the policy walk a model's step takes and why."""
    km = kernel_model(layout)
    walk = walk_of(km)
    n_factors = len(layout.num_states)
    why = f" ({layout.factored_reason})" if layout.factored_reason else ""
    if walk == WALK_SINGLE:
        return "one-factor walk: one hidden factor with a sparse B (nodes valued from the parent)"
    if walk == WALK_HEADS:
        tree = layout.tree
        h = head_factors.py_func(km.num_states, tree.depth, tree.action, km.B_deps)
        tail = (f"factor {h} takes one action per depth and moves" if h == n_factors - 1
                else f"factors {h}-{n_factors - 1} take one action per depth and move")
        lanes = (f", {LANES} agents side by side" if layout_lane_walk_floats(layout) else "")
        return f"shared-tail walk: {tail} alone (predicted once per step{lanes}){why}"
    if layout.F_sparse.shape[0]:
        return f"factored walk: every node valued per modality from factor marginals{why}"
    kind = "one factor with a dense B" if n_factors == 1 else "no shared tail of factors"
    return f"tree walk: every node's joint belief ({kind}){why}"


# ------------------------------------------------------------------------------------ step
_PRANGE_ONLY = {"prange": True, "comprehension": False, "reduction": False,
                "inplace_binop": False, "setitem": False, "numpy": False, "stencil": False,
                "fusion": False}
"""Numba's parallel passes the step needs: its one prange loop, none of the array-expression
rewrites (the fusion pass alone took 18 s of a 122 s cold compile)."""


SERIAL_BELOW = 64
"""Below this many agents a step runs the serial kernel (no hand-off to the thread pool)."""


def runs_serial(n_agents: int, threads: int) -> bool:
    """Whether a step of ``n_agents`` on ``threads`` threads takes :func:`serial_kernel`."""
    return threads == 1 or n_agents < SERIAL_BELOW


def _block_kernel(walk: int):  # noqa: ANN202
    """The compiled loop over one block of agents for the walk ``walk``: a plain function
    without reference counting, outside the parallel driver, so that Numba's parallel passes
    see a short body (``docs/architecture.md``, "One compiled step per walk")."""

    @njit(cache=True, _nrt=False, error_model="numpy")
    def step_block(km, kc, lo, hi, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
                   actions_out, seed, tick, fs, its, sizes, num_iter):
        views = scratch_views(fs, sizes)
        if walk == WALK_SINGLE:
            sparse = single_views(km, fs, its, sizes)
        elif walk == WALK_HEADS:
            sparse = head_views(km, fs, its, sizes)
        else:
            sparse = its
        # the shared-tail walk always has several factors: a constant test, so that its
        # compile leaves the one-agent loop out (both loops inline the whole walk)
        if walk == WALK_HEADS or (walk == WALK_TREE and km.num_states.shape[0] > 1):
            lanes = lane_views(km, fs, sizes)
            lane_walk = lane_walk_views(km, fs, lane_views_end(km, sizes), sizes)
            for g in range(lo, hi, LANES):
                step_lanes(km, kc, g, min(LANES, hi - g), agent_ids, obs, qs, prev_action,
                           started, q_pi_out, G_out, actions_out, seed, tick, fs, its, sizes,
                           num_iter, views, sparse, lanes, lane_walk, walk)
        else:
            for i in range(lo, hi):
                step_agent(km, kc, i, agent_ids[i], obs, qs, prev_action, started, q_pi_out,
                           G_out, actions_out, seed, tick, fs, its, sizes, num_iter, views,
                           sparse, walk)

    return step_block


_step_block_single = _block_kernel(WALK_SINGLE)
_step_block_tree = _block_kernel(WALK_TREE)
_step_block_heads = _block_kernel(WALK_HEADS)


@njit(cache=True, inline="always")
def step_walk_block(walk, km, kc, lo, hi, agent_ids, obs, qs, prev_action, started, q_pi_out,
                    G_out, actions_out, seed, tick, fs, its, sizes, num_iter):
    """Agents ``lo..hi`` through the block function of ``walk``: inlined into an entry whose
    ``walk`` is a constant, Numba keeps only that walk's call. ``lo`` is passed as an int64
    whatever the caller wrote: a literal 0 would compile the block function a second time."""
    lo = np.int64(lo)
    if walk == WALK_SINGLE:
        _step_block_single(km, kc, lo, hi, agent_ids, obs, qs, prev_action, started, q_pi_out,
                           G_out, actions_out, seed, tick, fs, its, sizes, num_iter)
    elif walk == WALK_HEADS:
        _step_block_heads(km, kc, lo, hi, agent_ids, obs, qs, prev_action, started, q_pi_out,
                          G_out, actions_out, seed, tick, fs, its, sizes, num_iter)
    else:
        _step_block_tree(km, kc, lo, hi, agent_ids, obs, qs, prev_action, started, q_pi_out,
                         G_out, actions_out, seed, tick, fs, its, sizes, num_iter)


@njit(cache=True, inline="always")
def claim_scratch_row(fs, its, memo_token):
    """Clear a thread's scratch row (both memos, and what another layout left) unless it was
    last used with ``memo_token``; the row's last int keeps the token."""
    last = its.shape[0] - 1
    if its[last] != memo_token:
        for k in range(last):
            its[k] = 0
        for k in range(fs.shape[0]):
            fs[k] = 0.0
        its[last] = memo_token


@functools.cache
def serial_kernel(walk: int):  # noqa: ANN201
    """``step_kernel(walk)``'s twin for one thread, without Numba's parallel machinery: what
    the workers (one thread each) and small populations call. The same arguments and results;
    it uses the first scratch row only."""

    @njit(cache=True)
    def step_serial(kref, kc, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
                    actions_out, seed, tick, fscratch, iscratch, sizes, num_iter, memo_token):
        claim_scratch_row(fscratch[0], iscratch[0], memo_token)
        step_walk_block(walk, unpack(kref), kc, 0, obs.shape[0], agent_ids, obs, qs,
                        prev_action, started, q_pi_out, G_out, actions_out, seed, tick,
                        fscratch[0], iscratch[0], sizes, num_iter)

    return step_serial


@functools.cache
def step_kernel(walk: int):  # noqa: ANN201
    """The compiled ``step_agents`` for models taking the walk ``walk`` (:func:`walk_of`).

    Each walk is its own compiled function, holding only that walk: one function with every
    walk compiled for minutes cold and grew with each walk added (``docs/architecture.md``).
    ``walk`` is a constant of the closure, so Numba prunes the other walks before typing, and
    the cache keeps one entry per walk. Callers keep the function (``Agents``,
    ``SharedState``): the lookup is a Python call.
    """

    @njit(cache=True, parallel=_PRANGE_ONLY)
    def step_agents(kref, kc, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
                    actions_out, seed, tick, fscratch, iscratch, sizes, num_iter, memo_token):
        """One full step for every agent ``i`` (rows of the per-agent arrays), in parallel;
        ``kref`` is the model's :class:`KernelModelRef`.

        ``agent_ids[i]`` keys the random stream; scratch rows are taken by thread id. Agents
        at their episode's first step reuse the results of an earlier agent that started on
        the same observation (``_step_agent``): the scratch remembers them across calls for as
        long as ``memo_token`` stays the same, so a caller gives each (model, kernel config)
        it steps with the same scratch its own token (an int > 0). A new token clears the
        thread's scratch (both memos, and what another layout left where this one expects
        zeros) before use.
        """
        km = unpack(kref)
        n = obs.shape[0]
        for t in range(iscratch.shape[0]):
            claim_scratch_row(fscratch[t], iscratch[t], memo_token)
        # one block of agents per thread: the scratch views are made once per block
        blocks = min(n, fscratch.shape[0])
        for b in prange(blocks):
            tid = numba.get_thread_id()
            lo = b * n // blocks
            hi = (b + 1) * n // blocks
            step_walk_block(walk, km, kc, lo, hi, agent_ids, obs, qs, prev_action, started,
                            q_pi_out, G_out, actions_out, seed, tick, fscratch[tid],
                            iscratch[tid], sizes, num_iter)

    return step_agents


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
