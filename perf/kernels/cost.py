"""The FLOPs and bytes of one agent step of the Numba kernel, from the model sizes and the
measured support of the agents' beliefs."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from engine import Agents, InferenceConfig

#: pymdp's spm_MDP_G threshold: predicted states at or below it are skipped by the kernel.
EXP_M16 = math.exp(-16.0)


@dataclasses.dataclass(frozen=True)
class Support:
    """How much of the state space an agent's beliefs cover (medians over sampled agents).

    ``states``: entries of q(s) above e^-16 (the kernel's threshold); ``outcome_terms``: non-zero
    joint-outcome probabilities of those states (summed); ``outcomes``: distinct joint outcomes
    they touch (the entropy's length).
    """

    states: float
    outcome_terms: float
    outcomes: float
    sampled_agents: int


def belief_support(agents: Agents, sample: int, rng: np.random.Generator) -> Support:
    """Measure :class:`Support` from the (single-factor) beliefs of up to ``sample`` agents."""
    layout = agents.layout
    q = agents.qs[0]
    rows = np.arange(q.shape[0]) if q.shape[0] <= sample else \
        rng.choice(q.shape[0], size=sample, replace=False)
    po_ptr, po_idx = layout.po_ptr, layout.po_idx
    per_state_terms = np.diff(po_ptr)
    states, terms, outcomes = [], [], []
    for i in rows:
        live = np.flatnonzero(np.asarray(q[i], dtype=np.float64) > EXP_M16)
        states.append(live.size)
        terms.append(int(per_state_terms[live].sum()))
        touched = np.concatenate([po_idx[po_ptr[j]:po_ptr[j + 1]] for j in live]) \
            if live.size else np.zeros(0, dtype=np.int64)
        outcomes.append(np.unique(touched).size)
    return Support(states=float(np.median(states)), outcome_terms=float(np.median(terms)),
                   outcomes=float(np.median(outcomes)), sampled_agents=int(rows.size))


def step_cost(agents_or_layout: Any, support: Support | None,
              config: InferenceConfig | None = None,
              obs_itemsize: int = 8) -> dict[str, Any] | None:
    """FLOPs and bytes of one agent step of the Numba kernel (single-factor models).

    Counted from the model sizes and ``engine/kernels/numba/``'s algorithm; a log, exp or
    comparison counts as one operation (a log costs far more cycles than a multiply, so the
    share of peak is a lower bound on how busy the core is). ``support`` says how many states
    the kernel's e^-16 threshold lets through (``None``: all of them); the predicted beliefs
    of every policy-tree node are assumed to have the posterior's support (deterministic moves
    can only merge states).

    Per step: prior ``B[a] @ q`` from B's row lists (2 per non-zero); posterior
    ``(L + e)(p + e)`` normalised: ``(M + 5) S``; per tree node: utility dot against the
    pulled-back utility ``2 S``, information gain over the ``k`` predicted states that can pass
    e^-16 (their row sums ``2 k``, ambiguity ``2 k``, outcome accumulation
    ``2 * outcome_terms``, entropy ``4 * outcomes``; memo hits are not discounted, so this is
    an upper bound), accumulate G ``2``; internal nodes only: their prediction (sparse B, 2 per
    non-zero) and the scan for states above the cut ``S``; policy posterior ``7 P``; marginal
    action selection ``P + 3 U``.

    Bytes: the per-agent state read and written (q(s) read and written, q(pi) and G written,
    observations read, actions written, previous action read and written, started flag, agent
    id); the shared model tables are assumed to stay in cache. Returns ``None`` for models with
    more than one factor.
    """
    layout = getattr(agents_or_layout, "layout", agents_or_layout)
    if config is None:
        config = getattr(agents_or_layout, "config", InferenceConfig())
    if layout.n_factors != 1:
        return None
    S = int(layout.num_states[0])
    M = layout.n_modalities
    U = int(layout.num_controls[0])
    P = layout.n_policies
    n_nodes = layout.tree.n_nodes
    if bool(layout.B_sparse[0]):
        nnz = np.diff(layout.Bs_ptr[0, :U + 1]).astype(np.float64)
    else:
        nnz = np.full(U, float(S * S))
    if support is None:
        k = float(S)
        terms = float(layout.po_ptr[-1])
        outcomes = float(layout.n_joint_obs)
    else:
        k, terms, outcomes = support.states, support.outcome_terms, support.outcomes
    internal = layout.tree.depth < layout.policy_len - 1
    node_B = float(sum(2.0 * nnz[int(a)] + S
                       for a in layout.tree.action[internal, 0]))
    per_node = {
        "utility": 2.0 * S if config.use_utility else 0.0,
        "candidates_ambiguity": 4.0 * k if config.use_states_info_gain else 0.0,
        "outcome_accumulate": 2.0 * terms if config.use_states_info_gain else 0.0,
        "outcome_entropy": 4.0 * outcomes if config.use_states_info_gain else 0.0,
        "accumulate_G": 2.0,
    }
    flops = {
        "prior": 2.0 * float(nnz.mean()),
        "posterior": float((M + 5) * S),
        "tree_internal_B": node_B,
        **{f"tree_{name}": value * n_nodes for name, value in per_node.items()},
        "policy_posterior": 7.0 * P,
        "action": float(P + 3 * U),
    }
    item = np.dtype(layout.dtype).itemsize
    F = layout.n_factors
    bytes_ = {
        "qs": 2 * S * item, "q_pi_G": 2 * P * item, "obs": M * obs_itemsize,
        "actions": F * 8, "prev_action": 2 * F * 8, "started": 2, "agent_id": 8,
    }
    return {"S": S, "M": M, "U": U, "P": P, "tree_nodes": n_nodes,
            "support": dataclasses.asdict(support) if support is not None else None,
            "flops": flops, "flops_total": float(sum(flops.values())),
            "bytes": bytes_, "bytes_total": int(sum(bytes_.values()))}


