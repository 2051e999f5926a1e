"""The floating-point work and per-agent bytes of one agent step, counted from a model's sizes
and non-zeros alone (any number of factors and modalities), for the zoo's share-of-peak figures.

Unlike :func:`perf.kernels.cost.step_cost` it needs no agents and no belief support: it counts
what the model needs, not what one kernel skips. The counting rules are in docs/zoo.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.model.generative_model import GenerativeModel


def tree_nodes(policies: np.ndarray) -> int:
    """Distinct action prefixes of a ``(P, L, F)`` policy set: the nodes of its policy tree."""
    P, L = policies.shape[:2]
    flat = policies.reshape(P, L, -1)
    return sum(len({flat[p, :d].tobytes() for p in range(P)}) for d in range(1, L + 1))


def _column_nonzeros(model: GenerativeModel) -> list[np.ndarray]:
    """For each modality, its non-zeros per joint state (C order over every factor)."""
    out = []
    for a, deps in zip(model.A, model.A_factor_list, strict=True):
        nnz = np.count_nonzero(a, axis=0).astype(np.float64)      # over its own factors
        shape = [model.num_states[f] if f in deps else 1 for f in range(len(model.num_states))]
        order = sorted(range(len(deps)), key=lambda i: deps[i])
        nnz = np.transpose(nnz, order).reshape(shape)
        out.append(np.broadcast_to(nnz, tuple(model.num_states)).ravel())
    return out


#: pymdp's spm_MDP_G threshold: states believed at or below it add nothing to the gain.
EXP_M16 = math.exp(-16.0)


def live_joint_fraction(qs: Sequence[np.ndarray], rng: np.random.Generator,
                        sample: int = 500) -> float:
    """The median share of joint states whose factorised belief passes e^-16 in every factor
    (product of the per-factor shares), over up to ``sample`` agents of ``qs`` (n, S_f)."""
    n = int(qs[0].shape[0])
    rows = np.arange(n) if n <= sample else rng.choice(n, size=sample, replace=False)
    share = np.ones(rows.size)
    for q in qs:
        live = np.asarray(q[rows], dtype=np.float64) > EXP_M16
        share *= live.sum(axis=1) / q.shape[1]
    return float(np.median(share))


def model_step_cost(model: GenerativeModel, policy_len: int, num_iter: int = 10,
                    itemsize: int = 4, live_fraction: float = 1.0) -> dict[str, Any]:
    """FLOPs of one agent step of ``model`` at ``policy_len``, two ways, and its bytes.

    ``flops`` takes the state information gain over the joint outcome space of all modalities
    (pymdp 0.0.7.1's quantity, agentloop's default): per tree node, the predicted joint outcome
    costs 2 per non-zero of the joint likelihood (``joint_terms``: the sum over joint states of
    the product of each modality's non-zeros; ``n_joint_states x n_joint_outcomes`` when every
    A is dense) and its entropy 4 per joint outcome; ``live_fraction`` (measured by
    :func:`live_joint_fraction`) scales the joint terms to the states whose belief passes
    pymdp's e^-16 cut, which agentloop and pymdp 0.0.7.1 skip (tree nodes are assumed to keep
    the posterior's support). ``flops_per_modality`` sums the gain per modality over every
    state (pymdp 1.x's quantity, no cut). A multiply-add counts 2; a log, exp or comparison 1.
    ``bytes_total`` is the per-agent state read and written (model tables assumed in cache).
    """
    S_f = [int(s) for s in model.num_states]
    F, M = len(S_f), model.num_modalities
    S = math.prod(S_f)
    O_m = [int(o) for o in model.num_obs]
    O_joint = math.prod(O_m)
    policies = model.policies_for(policy_len)
    P = int(policies.shape[0])
    nodes = tree_nodes(policies)
    controlled = sorted({int(f) for f in model.control_fac_idx})
    U = sum(int(model.num_controls[f]) for f in controlled)
    nnz_B = [float(np.count_nonzero(b)) / b.shape[2] for b in model.B]     # per action, mean
    nnz_A = [float(np.count_nonzero(a)) for a in model.A]
    joint_terms = float(np.prod(np.stack(_column_nonzeros(model)), axis=0).sum())
    if F == 1:
        infer = float((M + 5) * S)
    else:
        infer = float(M * S + num_iter * (2 * F * S + 5 * sum(S_f)))
    predict = 2.0 * sum(nnz_B)
    shared = {"predicted_states": predict, "utility": sum(2.0 * a + 2.0 * o
                                                           for a, o in zip(nnz_A, O_m,
                                                                           strict=True)),
              "accumulate_G": 2.0}
    live = min(max(float(live_fraction), 0.0), 1.0)
    joint_node = {"joint_state": float((F - 1) * S), "joint_outcomes": 2.0 * live * joint_terms,
                  "outcome_entropy": 4.0 * min(float(O_joint), live * joint_terms),
                  "ambiguity": 2.0 * live * S}
    per_mod_node = {"outcomes": sum(2.0 * a for a in nnz_A),
                    "outcome_entropy": 4.0 * sum(O_m),
                    "ambiguity": sum(2.0 * math.prod(S_f[f] for f in deps)
                                     for deps in model.A_factor_list)}
    common = {"infer_states": infer, "prior": predict, "policy_posterior": 7.0 * P,
              "action": float(P + 3 * U)}
    flops = {**common, **{f"tree_{k}": v * nodes for k, v in {**shared, **joint_node}.items()}}
    per_mod = {**common,
               **{f"tree_{k}": v * nodes for k, v in {**shared, **per_mod_node}.items()}}
    bytes_ = {"qs": 2 * sum(S_f) * itemsize, "q_pi_G": 2 * P * itemsize, "obs": M * 8,
              "actions": F * 8, "prev_action": 2 * F * 8}
    return {"S": S, "factors": S_f, "M": M, "O_joint": O_joint, "joint_terms": joint_terms,
            "live_fraction": live,
            "P": P, "tree_nodes": nodes, "flops": flops, "flops_total": float(sum(flops.values())),
            "flops_per_modality": per_mod,
            "flops_per_modality_total": float(sum(per_mod.values())),
            "bytes": bytes_, "bytes_total": int(sum(bytes_.values()))}
