"""One agent's step, and the step of a group of :data:`LANES` agents whose state inference
runs side by side (:mod:`engine.kernels.numba.lane_inference`); the block loops of
:mod:`engine.kernels.numba.step` call them.

A step: the first-step memo, or the prior (D, or B of the last action applied to the last
posterior), the posterior, the policy walk's values, q(pi), the action.
"""

from __future__ import annotations

from numba import njit

from engine.kernels.numba.expected_free_energy import (
    policy_values_heads,
    policy_values_one,
    policy_values_single,
)
from engine.kernels.numba.lane_inference import VALID, infer_states_lanes
from engine.kernels.numba.lane_walk import policy_values_heads_lanes
from engine.kernels.numba.scratch import LANES, first_memo, first_step_slot
from engine.kernels.numba.stages import policy_posterior, predict_states, select_action_one
from engine.kernels.numba.state_inference import infer_states_one, infer_states_one_factor

WALK_SINGLE = 0
"""The walk of a model with one factor whose B is sparse (``policy_values_single``)."""
WALK_TREE = 1
"""The generic prefix-tree walk (``policy_values_one``)."""
WALK_HEADS = 2
"""The walk of several factors whose last ones share one belief per depth
(``policy_values_heads``, ``scratch.head_factors``)."""


@njit(cache=True, inline="always")
def _from_memo(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
               actions_out, seed, tick, fs, iscratch, sizes, views):
    """Finish agent ``i`` from the first-step memo when it is at its episode's first step and
    the memo holds its observation; whether it did.

    An agent at its first step starts from D, so its posterior, G and q(pi) are a function of
    its observation alone (for this model and kernel config): they are remembered per thread
    and reused; only the action draw, keyed by agent id, is its own."""
    if started[i]:
        return False
    keys, values = first_memo(fs, iscratch, sizes, obs.shape[1])
    slot = first_step_slot(obs[i], keys)
    if slot < 0 or keys[slot, 0] == 0:
        return False
    post, G, qpi, marg = views[1], views[10], views[11], views[13]
    s_tot = km.state_offset[-1]
    n_pol = G.shape[0]
    row = values[slot]
    for s in range(s_tot):
        post[s] = row[s]
    for p in range(n_pol):
        G[p] = row[s_tot + p]
        qpi[p] = row[s_tot + n_pol + p]
    _finish_step(km, kc, i, agent_id, qs, prev_action, started, q_pi_out, G_out, actions_out,
                 seed, tick, post, G, qpi, marg)
    return True


@njit(cache=True, inline="always")
def _prior_into(km, i, qs, prev_action, started, prior):
    """Agent ``i``'s prior: D at its first step, else B of its last action on its posterior."""
    if started[i]:
        predict_states(km, prev_action[i], qs[i], 0, prior, 0)
    else:
        for s in range(km.state_offset[-1]):
            prior[s] = km.D_flat[s]


@njit(cache=True, inline="always")
def step_agent(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
               actions_out, seed, tick, fs, iscratch, sizes, num_iter, views, sparse, walk):
    """One agent's step; ``views`` and ``sparse`` are the thread's scratch regions
    (:func:`scratch_views`, :func:`sparse_views`), made once per block of agents.

    The per-agent arrays are separate arguments, not a namedtuple: in a ``prange`` body Numba
    drops writes made through a namedtuple's attributes (``docs/architecture.md``)."""
    if _from_memo(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                  actions_out, seed, tick, fs, iscratch, sizes, views):
        return
    prior, post, lnprior, qL, qtmp, lnL, qj = views[:7]
    _prior_into(km, i, qs, prev_action, started, prior)
    if walk == WALK_SINGLE:                         # one factor: no sweeps to compile
        infer_states_one_factor(km, km.A_flat, obs[i], prior, post, lnL)
    else:
        infer_states_one(km, kc, km.A_flat, obs[i], prior, post, lnprior, qL, qtmp, lnL, qj,
                         num_iter)
    _value_and_finish(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                      actions_out, seed, tick, fs, iscratch, sizes, views, sparse, walk)


@njit(cache=True, inline="always")
def step_lanes(km, kc, lo, n, agent_ids, obs, qs, prev_action, started, q_pi_out, G_out,
               actions_out, seed, tick, fs, iscratch, sizes, num_iter, views, sparse, lanes,
               lane_walk, walk):
    """The step of agents ``lo .. lo + n`` (``n <= LANES``, several factors): their state
    inference side by side in ``lanes`` (``scratch.lane_views``), then their walks side by
    side in ``lane_walk`` (``lane_walk.lane_walk_views``) where the model has them, else
    each one's walk."""
    prior = views[0]
    post = views[1]
    lane_prior, lane_post = lanes[0], lanes[1]
    valid = lanes[7][VALID]
    s_tot = km.state_offset[-1]
    n_valid = 0
    for ln in range(LANES):
        i = lo + ln
        if ln < n and not _from_memo(km, kc, i, agent_ids[i], obs, qs, prev_action, started,
                                     q_pi_out, G_out, actions_out, seed, tick, fs, iscratch,
                                     sizes, views):
            _prior_into(km, i, qs, prev_action, started, prior)
            valid[ln] = 1.0
            n_valid += 1
        else:
            for s in range(s_tot):
                prior[s] = km.D_flat[s]
            valid[ln] = 0.0
        for s in range(s_tot):
            lane_prior[s, ln] = prior[s]
    if n_valid == 0:
        return
    infer_states_lanes(km, kc, km.A_flat, obs, lo, n, lanes, num_iter)
    if walk == WALK_HEADS and lane_walk[12].shape[0] > 0:
        policy_values_heads_lanes(km, kc, lane_post, lane_walk, sizes, n)
        lane_G = lane_walk[11]
        G = views[10]
        for ln in range(n):
            if valid[ln] != 0.0:
                for s in range(s_tot):
                    post[s] = lane_post[s, ln]
                for p in range(G.shape[0]):
                    G[p] = lane_G[p, ln]
                _choose_and_finish(km, kc, lo + ln, agent_ids[lo + ln], obs, qs,
                                   prev_action, started, q_pi_out, G_out, actions_out, seed,
                                   tick, fs, iscratch, sizes, views)
        return
    for ln in range(n):
        if valid[ln] != 0.0:
            for s in range(s_tot):
                post[s] = lane_post[s, ln]
            _value_and_finish(km, kc, lo + ln, agent_ids[lo + ln], obs, qs, prev_action,
                              started, q_pi_out, G_out, actions_out, seed, tick, fs, iscratch,
                              sizes, views, sparse, walk)


@njit(cache=True, inline="always")
def _value_and_finish(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                      actions_out, seed, tick, fs, iscratch, sizes, views, sparse, walk):
    """From agent ``i``'s posterior (``views[1]``): the policy values, q(pi), the first-step
    memo's entry, the action."""
    _, post, _, _, _, _, qj, qdepth, gacc, gnode, G, _, qo, _ = views
    touched = iscratch
    if walk == WALK_SINGLE:
        seen, stamp, big, n_big, rows, vals, memo_key, memo_val, util, dq, dqo, gain = sparse
        policy_values_single(km, kc, post, qdepth, gacc, gnode, qo, touched, seen, stamp, big,
                             n_big, rows, vals, memo_key, memo_val, util, dq, dqo, gain, G)
    elif walk == WALK_HEADS:
        policy_values_heads(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, sparse, G)
    else:
        policy_values_one(km, kc, post, qdepth, qj, gacc, gnode, qo, touched, G)
    _choose_and_finish(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                       actions_out, seed, tick, fs, iscratch, sizes, views)


@njit(cache=True, inline="always")
def _choose_and_finish(km, kc, i, agent_id, obs, qs, prev_action, started, q_pi_out, G_out,
                       actions_out, seed, tick, fs, iscratch, sizes, views):
    """From agent ``i``'s posterior and G (``views[1]``, ``views[10]``): q(pi), the
    first-step memo's entry, the action."""
    post, G, qpi, marg = views[1], views[10], views[11], views[13]
    policy_posterior(km, kc, G, qpi)
    if not started[i]:
        keys, values = first_memo(fs, iscratch, sizes, obs.shape[1])
        slot = first_step_slot(obs[i], keys)
        if slot >= 0:
            keys[slot, 0] = 1
            for m in range(obs.shape[1]):
                keys[slot, 1 + m] = obs[i, m]
            s_tot = km.state_offset[-1]
            n_pol = G.shape[0]
            row = values[slot]
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
