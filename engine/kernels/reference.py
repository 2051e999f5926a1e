"""The executable specification: pymdp 0.0.7.1's mathematics in plain NumPy float64, batched.

Written for reading, not speed. Every function takes beliefs with the agent axis first
(``qs[f]`` has shape ``(n, S_f)``) and follows the pymdp function it names, including its
numerical details (``PYMDP_NOTES.md`` section 3): ``ln(x + 1e-16)``, the joint likelihood
logged once, the e^-16 threshold and offset of ``spm_MDP_G``, ``ln(softmax(C) + 1e-16)``.
The compiled kernels are tested against this module and this module against pymdp itself.
"""

from __future__ import annotations

import numpy as np

from engine.kernels.rng import uniform
from engine.model.config import InferenceConfig
from engine.model.constants import PYMDP1_MINVAL, TIE_TOL
from engine.model.generative_model import GenerativeModel

EPS = 1e-16
EXP_M16 = np.exp(-16.0)

Beliefs = list[np.ndarray]


def spm_log(x: np.ndarray) -> np.ndarray:
    return np.log(x + EPS)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def joint(qs: Beliefs) -> np.ndarray:
    """Outer product of the factor marginals: ``(n, S_1, ..., S_F)``."""
    out = qs[0]
    for q in qs[1:]:
        out = out[..., None] * q.reshape(q.shape[0], *([1] * (out.ndim - 1)), q.shape[1])
    return out


# ---------------------------------------------------------------------------- state inference
def transition_prior(model: GenerativeModel, qs: Beliefs, actions: np.ndarray) -> Beliefs:
    """``B[f][:, :, a_f] @ qs[f]`` for every agent (pymdp's ``get_expected_states``); a factor
    with ``B_factor_list[f]`` contracts ``B[f][..., a_f]`` with the marginals of those
    factors (pymdp 1.x's ``compute_expected_state``)."""
    return [predict_factor(b[None], model.B_factor_list[f], qs, actions[:, f])
            for f, b in enumerate(model.B)]


def predict_factor(b: np.ndarray, deps: tuple[int, ...], qs: Beliefs, u: np.ndarray | int
                   ) -> np.ndarray:
    """Factor f's predicted marginal per agent: ``b`` is ``(n | 1, S_f, S_d..., U_f)`` over the
    factors ``deps``, ``u`` the action (per agent or one for all), ``qs`` the marginals."""
    n = qs[0].shape[0]
    weights = qs[deps[0]]
    for d in deps[1:]:
        weights = (weights[:, :, None] * qs[d][:, None, :]).reshape(n, -1)
    flat = b.reshape(b.shape[0], b.shape[1], -1, b.shape[-1])          # (n | 1, S_f, K, U)
    chosen = np.moveaxis(flat, -1, 1)                                   # (n | 1, U, S_f, K)
    if np.ndim(u) == 0:
        per_agent = np.broadcast_to(chosen[:, int(u)], (n, *chosen.shape[2:]))
    else:
        rows = np.arange(n) if chosen.shape[0] == n else np.zeros(n, dtype=np.int64)
        per_agent = chosen[rows, np.asarray(u)]
    return np.einsum("nik,nk->ni", per_agent, weights)


def initial_prior(model: GenerativeModel, n: int) -> Beliefs:
    return [np.tile(d, (n, 1)) for d in model.D]


def log_likelihood(model: GenerativeModel, obs: np.ndarray, semantics: str = "pymdp0"
                   ) -> np.ndarray:
    """ln p(o | joint state), ``(n, S_1, ..., S_F)``: ``ln(prod_m A_m[o_m, ...] + 1e-16)``
    (pymdp 0.0.7.1) or ``sum_m ln max(A_m[o_m, ...], MINVAL)`` (pymdp 1.x)."""
    full_A = model.full_A()
    if semantics == "pymdp1":
        total = np.zeros((obs.shape[0], *model.num_states))
        for m, a in enumerate(full_A):
            total = total + log_floor(a[obs[:, m]])
        return total
    like = np.ones((obs.shape[0], *model.num_states))
    for m, a in enumerate(full_A):
        like = like * a[obs[:, m]]
    return spm_log(like)


def log_floor(x: np.ndarray) -> np.ndarray:
    """pymdp 1.x's ``log_stable``: ``ln max(x, MINVAL)``."""
    return np.log(np.maximum(x, PYMDP1_MINVAL))


def free_energy(qs: Beliefs, ln_prior: Beliefs, lnL: np.ndarray | None) -> np.ndarray:
    """pymdp's ``calc_free_energy``, per agent."""
    vfe = np.zeros(qs[0].shape[0])
    for q, lp in zip(qs, ln_prior, strict=True):
        vfe += (q * np.log(q + EPS)).sum(axis=1) - (q * lp).sum(axis=1)
    if lnL is not None:
        vfe -= (lnL * joint(qs)).reshape(lnL.shape[0], -1).sum(axis=1)
    return vfe


def infer_states(model: GenerativeModel, obs: np.ndarray, prior: Beliefs,
                 num_iter: int = 10, dF: float = 1.0, dF_tol: float = 0.001,
                 semantics: str = "pymdp0") -> Beliefs:
    """pymdp's ``run_vanilla_fpi`` for every agent: 0.0.7.1's stops on each agent's own
    convergence, 1.x's (``run_factorized_fpi``) runs every one of ``num_iter`` sweeps."""
    n, n_factors = obs.shape[0], model.num_factors
    if semantics == "pymdp1":
        dF_tol = -1.0
    lnL = log_likelihood(model, obs, semantics)
    ln_prior = [log_floor(p) if semantics == "pymdp1" else spm_log(p) for p in prior]
    if n_factors == 1:
        return [softmax(lnL + ln_prior[0], axis=1)]
    qs = [np.full((n, s), 1.0 / s) for s in model.num_states]
    prev_vfe = free_energy(qs, ln_prior, None)
    delta = np.full(n, float(dF))
    active = np.ones(n, dtype=bool)
    for _ in range(num_iter):
        active &= delta >= dF_tol
        if not active.any():
            break
        weighted = lnL * joint(qs)
        new_qs = []
        for f in range(n_factors):
            other_axes = tuple(1 + g for g in range(n_factors) if g != f)
            qL = weighted.sum(axis=other_axes) / qs[f]
            new_qs.append(softmax(qL + ln_prior[f], axis=1))
        vfe = free_energy(new_qs, ln_prior, lnL)
        for f in range(n_factors):
            qs[f] = np.where(active[:, None], new_qs[f], qs[f])
        delta = np.where(active, np.abs(prev_vfe - vfe), delta)
        prev_vfe = np.where(active, vfe, prev_vfe)
    return qs


# ---------------------------------------------------------------------------- policies
def joint_outcome_probabilities(model: GenerativeModel) -> np.ndarray:
    """``p(o_1, ..., o_M | joint state)``: ``(prod S_f, prod O_m)``."""
    cols = [a.reshape(a.shape[0], -1).T for a in model.full_A()]   # (J, O_m)
    po = np.ones((cols[0].shape[0], 1))
    for c in cols:
        po = (po[:, :, None] * c[:, None, :]).reshape(po.shape[0], -1)
    return po


def states_info_gain_per_modality(A_full: list[np.ndarray], qs_joint: np.ndarray
                                  ) -> np.ndarray:
    """pymdp 1.x's ``compute_info_gain`` per agent: the sum over modalities of the outcome
    entropy less the expected entropy of A's columns (no cut of small states)."""
    q = qs_joint.reshape(qs_joint.shape[0], -1)
    gain = np.zeros(q.shape[0])
    for a in A_full:
        a2 = a.reshape(a.shape[0], -1)                                  # (O_m, J)
        h_a = -(a2 * log_floor(a2)).sum(axis=0)
        qo = q @ a2.T
        gain += -(qo * log_floor(qo)).sum(axis=1) - q @ h_a
    return gain


def states_info_gain(po: np.ndarray, qs_joint: np.ndarray) -> np.ndarray:
    """pymdp's ``spm_MDP_G`` per agent: mutual information of states and joint outcomes."""
    q = qs_joint.reshape(qs_joint.shape[0], -1)
    q = np.where(q > EXP_M16, q, 0.0)
    ambiguity = q @ (po * np.log(po + EXP_M16)).sum(axis=1)
    qo = q @ po
    return ambiguity - (qo * spm_log(qo)).sum(axis=1)


def expected_free_energy(model: GenerativeModel, qs: Beliefs, policies: np.ndarray,
                         config: InferenceConfig, pA: list[np.ndarray] | None = None,
                         pB: list[np.ndarray] | None = None,
                         A: list[np.ndarray] | None = None,
                         B: list[np.ndarray] | None = None) -> np.ndarray:
    """pymdp's negative expected free energy ``G`` for every agent and policy: ``(n, P)``;
    ``config.semantics`` picks pymdp 0.0.7.1's or 1.x's (utility of ``C`` as given, gain per
    modality).

    ``A``/``B``/``pA``/``pB`` may be per agent (leading agent axis) when agents learn; by
    default the model's arrays are shared.
    """
    n = qs[0].shape[0]
    G = np.zeros((n, policies.shape[0]))
    per_agent_A = A is not None
    A_full = A if per_agent_A else [a[None] for a in model.full_A()]
    B_used = B if B is not None else [b[None] for b in model.B]
    C = [c[:, None] if c.ndim == 1 else c for c in model.C]
    per_modality = config.semantics == "pymdp1"
    ln_pref = C if per_modality else [spm_log(softmax(c, axis=0)) for c in C]
    po_shared = None if per_agent_A or per_modality else joint_outcome_probabilities(model)
    for p, policy in enumerate(policies):
        qs_pi = qs
        for t in range(policy.shape[0]):
            qs_prev = qs_pi
            qs_pi = [predict_factor(B_used[f], model.B_factor_list[f], qs_pi, policy[t, f])
                     for f in range(model.num_factors)]
            qj = joint(qs_pi)
            qo = [contract_states(np.broadcast_to(a, (n, *a.shape[1:])), qj) for a in A_full]
            if config.use_utility:
                add_utility(G[:, p], qo, ln_pref, t)
            if config.use_states_info_gain:
                if per_modality:
                    G[:, p] += states_info_gain_per_modality(model.full_A(), qj)
                elif po_shared is not None:
                    G[:, p] += states_info_gain(po_shared, qj)
                else:
                    for i in range(n):
                        po_i = _agent_joint_outcomes([a[i] for a in A_full])
                        G[i, p] += states_info_gain(po_i, qj[i:i + 1])[0]
            if config.use_param_info_gain:
                if pA is not None:
                    for m, pa in enumerate(pA):
                        w = wnorm_batched(pa) * (pa > 0)
                        wq = contract_states(w, qj)
                        G[:, p] -= (qo[m] * wq).sum(axis=1)
                if pB is not None:
                    for f, pb in enumerate(pB):
                        a = policy[t, f]
                        w = wnorm_batched(pb[..., a]) * (pb[..., a] > 0)
                        G[:, p] -= np.einsum("ni,nij,nj->n", qs_pi[f], w, qs_prev[f])
    return G


def add_utility(total: np.ndarray, qo: list[np.ndarray], ln_pref: list[np.ndarray],
                t: int) -> None:
    """Add each modality's expected ln-preference at step ``t``, ``qo[m] @ ln_pref[m][:, t]``,
    to ``total`` (per agent, in place, modality by modality). ``ln_pref[m]`` is
    ``ln(softmax(C_m) + 1e-16)`` with one column, or one per step."""
    for q, lp in zip(qo, ln_pref, strict=True):
        total += q @ lp[:, t if lp.shape[1] > 1 else 0]


def contract_states(X: np.ndarray, qj: np.ndarray) -> np.ndarray:
    """``sum_s X[n, o, s...] qj[n, s...]`` (pymdp's ``spm_dot`` over all factors): ``(n, O)``."""
    n, n_obs = X.shape[0], X.shape[1]
    return np.einsum("nos,ns->no", X.reshape(n, n_obs, -1), qj.reshape(n, -1))


def wnorm_batched(p: np.ndarray) -> np.ndarray:
    """``spm_wnorm`` of per-agent Dirichlet arrays ``(n, O, ...)``."""
    p = p + EPS
    return 1.0 / p.sum(axis=1, keepdims=True) - 1.0 / p


def _agent_joint_outcomes(A_full_agent: list[np.ndarray]) -> np.ndarray:
    cols = [a.reshape(a.shape[0], -1).T for a in A_full_agent]
    po = np.ones((cols[0].shape[0], 1))
    for c in cols:
        po = (po[:, :, None] * c[:, None, :]).reshape(po.shape[0], -1)
    return po


def policy_posterior(G: np.ndarray, gamma: float, E: np.ndarray) -> np.ndarray:
    """``softmax(gamma * G + ln(E + 1e-16))`` per agent."""
    return softmax(G * gamma + spm_log(E)[None, :], axis=1)


# ---------------------------------------------------------------------------- actions
def action_marginals(q_pi: np.ndarray, policies: np.ndarray, num_controls: tuple[int, ...]
                     ) -> list[np.ndarray]:
    """P(u_f) from the first step of each policy, normalised (pymdp's ``sample_action``)."""
    out = []
    for f, u in enumerate(num_controls):
        onehot = np.eye(u)[policies[:, 0, f]]           # (P, U)
        marg = q_pi @ onehot
        out.append(marg / marg.sum(axis=1, keepdims=True))
    return out


def select_actions(q_pi: np.ndarray, policies: np.ndarray, num_controls: tuple[int, ...],
                   config: InferenceConfig, seed: int, agent_ids: np.ndarray, tick: int
                   ) -> np.ndarray:
    """Deterministic argmax (lowest index on ties within ``TIE_TOL``) or a draw from
    ``softmax(alpha ln P)``.

    Random draws come from :func:`engine.rng.uniform` keyed by (seed, agent id, tick, factor);
    ``sampling_mode="full"`` picks (or draws) a policy and returns its first action.
    """
    n, n_factors = q_pi.shape[0], len(num_controls)
    actions = np.zeros((n, n_factors), dtype=np.int64)
    if config.sampling_mode == "full":
        if config.action_selection == "deterministic":
            best = first_max(q_pi)
        else:
            p = softmax(spm_log(q_pi) * config.alpha, axis=1)
            best = np.array([_draw(p[i], uniform(seed, int(agent_ids[i]), tick, 0))
                             for i in range(n)])
        return policies[best, 0, :].astype(np.int64)
    for f, marg in enumerate(action_marginals(q_pi, policies, num_controls)):
        if config.action_selection == "deterministic":
            actions[:, f] = first_max(marg)
        else:
            p = softmax(spm_log(marg) * config.alpha, axis=1)
            actions[:, f] = [_draw(p[i], uniform(seed, int(agent_ids[i]), tick, f))
                             for i in range(n)]
    return actions


def first_max(p: np.ndarray) -> np.ndarray:
    """Per row, the lowest index whose value is within ``TIE_TOL`` of the row's largest."""
    return np.argmax(p >= p.max(axis=1, keepdims=True) - TIE_TOL, axis=1)


def _draw(p: np.ndarray, u: float) -> int:
    """Inverse-CDF draw; the last category absorbs rounding."""
    acc = 0.0
    for k in range(p.shape[0] - 1):
        acc += p[k]
        if u < acc:
            return k
    return p.shape[0] - 1


# ---------------------------------------------------------------------------- learning
def update_A(pA: list[np.ndarray], A: list[np.ndarray], obs: np.ndarray, qs: Beliefs,
             lr: float, modalities: tuple[int, ...] | str = "all"
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """pymdp's ``update_obs_likelihood_dirichlet`` then ``A = norm(qA)``, per agent.

    ``pA[m]``/``A[m]`` carry the agent axis first and span every factor (pymdp's layout).
    """
    new_pA, new_A = [], []
    chosen = range(len(pA)) if modalities == "all" else modalities
    for m, (pa, a) in enumerate(zip(pA, A, strict=True)):
        if m not in chosen:            # pymdp still sets A = norm(pA) for every modality
            new_pA.append(pa)
            new_A.append(pa / pa.sum(axis=1, keepdims=True))
            continue
        n, n_obs = pa.shape[0], pa.shape[1]
        qj = joint(qs)
        onehot = np.eye(n_obs)[obs[:, m]]
        dfda = onehot.reshape(n, n_obs, *([1] * (qj.ndim - 1))) * qj[:, None]
        qa = pa + lr * dfda * (a > 0)
        new_pA.append(qa)
        new_A.append(qa / qa.sum(axis=1, keepdims=True))
    return new_pA, new_A


def update_B(pB: list[np.ndarray], B: list[np.ndarray], actions: np.ndarray, qs: Beliefs,
             qs_prev: Beliefs, lr: float, factors: tuple[int, ...] | str = "all"
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """pymdp's ``update_state_likelihood_dirichlet`` then ``B = norm(qB)``, per agent."""
    new_pB, new_B = [], []
    chosen = range(len(pB)) if factors == "all" else factors
    for f, (pb, b) in enumerate(zip(pB, B, strict=True)):
        if f not in chosen:            # pymdp still sets B = norm(pB) for every factor
            new_pB.append(pb)
            new_B.append(pb / pb.sum(axis=1, keepdims=True))
            continue
        qb = pb.copy()
        idx = np.arange(pb.shape[0])
        a = actions[:, f]
        dfdb = qs[f][:, :, None] * qs_prev[f][:, None, :]
        qb[idx, :, :, a] += lr * dfdb * (b[idx, :, :, a] > 0)
        new_pB.append(qb)
        new_B.append(qb / qb.sum(axis=1, keepdims=True))
    return new_pB, new_B
