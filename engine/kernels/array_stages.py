"""What the array step computes with but does not keep, as functions of the arrays they read:
the counter-based random stream in ``xp``, host copies, softmax and joint, the policy tree split
by depth, the check of device observations, state inference and action selection (``xp`` is
NumPy or CuPy)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from engine.errors import ObservationError
from engine.kernels.observations import check_array
from engine.model.config import InferenceConfig
from engine.model.constants import EPS, PYMDP1_MINVAL, TIE_TOL
from engine.model.layout import ModelLayout

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


# ------------------------------------------------------------------------------ random stream
def _mix_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (mod 2**64): the scalar parts of the key."""
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def _mix_xp(z: Any) -> Any:
    """SplitMix64's finaliser on a uint64 ``xp`` array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def agent_keys(xp: ModuleType, seed: int, agent_ids: Any) -> Any:
    """The per-agent part of the key of :func:`engine.rng.uniform` (fixed for a population)."""
    z0 = _mix_int((int(seed) + _GOLDEN) & _MASK64)
    ids = xp.asarray(agent_ids).astype(xp.uint64)
    return _mix_xp((ids * np.uint64(_GOLDEN) + np.uint64(_M1)) ^ np.uint64(z0))


def uniforms_from_keys(xp: ModuleType, keys: Any, tick: int, stream: int) -> Any:
    """``uniform(seed, agent, tick, stream)`` for every agent, given :func:`agent_keys`."""
    t = (int(tick) * _M1 + _M2) & _MASK64
    s = (int(stream) * _M2 + _GOLDEN) & _MASK64
    z = _mix_xp(keys ^ np.uint64(t))
    z = _mix_xp(z ^ np.uint64(s))
    return (z >> np.uint64(11)).astype(xp.float64) * _TO_UNIT


def uniforms_xp(xp: ModuleType, seed: int, agent_ids: Any, tick: int, stream: int) -> Any:
    """:func:`engine.rng.uniform` for every id in ``agent_ids``, as a float64 ``xp`` array."""
    return uniforms_from_keys(xp, agent_keys(xp, seed, agent_ids), tick, stream)


# ------------------------------------------------------------------------------ helpers
def to_host(a: Any) -> np.ndarray:
    """A NumPy copy (CuPy) or the array itself (NumPy)."""
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def copy_into_host(src: Any, dst: np.ndarray) -> None:
    """``dst[...] = src`` for an ``xp`` array ``src`` (straight from the device when the
    dtypes agree and ``dst`` is contiguous; through a host copy otherwise)."""
    get = getattr(src, "get", None)
    if not callable(get):
        np.copyto(dst, src)
    elif dst.dtype == src.dtype and dst.flags.c_contiguous:
        get(out=dst)
    else:
        np.copyto(dst, get())


def softmax(xp: ModuleType, x: Any) -> Any:
    """Softmax over the last axis (max subtracted, no EPS), as the CPU kernels do."""
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def transition_input(qs: list[Any], deps: tuple[int, ...]) -> Any:
    """What ``B[f]`` multiplies: ``qs[f]`` when ``deps`` is ``(f,)``, else the outer product
    of the marginals of the factors ``deps``, flat over their joint states (last axis)."""
    out = qs[deps[0]]
    for d in deps[1:]:
        out = (out[..., :, None] * qs[d][..., None, :]).reshape(*out.shape[:-1], -1)
    return out


def outer_joint(qs: list[Any]) -> Any:
    """Outer product over factors along the last axis (factor 0 slowest): ``(..., J)``."""
    out = qs[0]
    for q in qs[1:]:
        out = (out[..., :, None] * q[..., None, :]).reshape(*out.shape[:-1], -1)
    return out


class TreeLevel:
    """One depth of the policy tree, ready for batched products.

    ``groups[f]`` lists, per action ``u`` of factor ``f`` used at this depth, the nodes (positions
    within the depth) taking it, the distinct parents (positions within the previous depth) they
    hang from, and each node's index into those parents.
    """

    def __init__(self, n_nodes: int, parent: np.ndarray,
                 groups: list[list[tuple[int, Any, Any, Any]]]) -> None:
        self.n_nodes = n_nodes
        self.parent = parent
        self.groups = groups


def tree_levels(xp: ModuleType, lay: ModelLayout) -> tuple[list[TreeLevel], Any]:
    """The policy tree split by depth, with the per-(factor, action) node groups, and each
    policy's leaf position within the last depth."""
    tree = lay.tree
    depth, action = tree.depth, tree.action
    horizon = lay.policy_len
    pos = np.zeros(depth.shape[0], dtype=np.int64)
    parent = np.full(depth.shape[0], -1, dtype=np.int64)
    last_at: dict[int, int] = {}
    counts = [0] * horizon
    for k in range(depth.shape[0]):                    # depth-first preorder
        d = int(depth[k])
        pos[k] = counts[d]
        counts[d] += 1
        parent[k] = last_at[d - 1] if d > 0 else -1
        last_at[d] = k
    levels = []
    for d in range(horizon):
        nodes = np.nonzero(depth == d)[0]
        par = pos[parent[nodes]] if d > 0 else np.zeros(nodes.size, dtype=np.int64)
        groups = []
        for f in range(lay.n_factors):
            per_u = []
            for u in np.unique(action[nodes, f]):
                idx = np.nonzero(action[nodes, f] == u)[0]
                uniq, inv = np.unique(par[idx], return_inverse=True)
                per_u.append((int(u), xp.asarray(idx), xp.asarray(uniq),
                              xp.asarray(inv.reshape(-1))))
            groups.append(per_u)
        levels.append(TreeLevel(int(nodes.size), xp.asarray(par), groups))
    return levels, xp.asarray(pos[tree.leaf_of_policy])


def check_device_observations(xp: ModuleType, obs: Any, n: int, num_obs: np.ndarray,
                              num_obs_xp: Any) -> Any:
    """:func:`engine.kernels.observations.check_observations` for observations already in
    ``xp`` arrays (``num_obs_xp`` is ``num_obs`` there): the same messages; returns them as
    int64."""
    n_mod = len(num_obs)
    check_array(obs, xp.ndarray, n, n_mod)
    obs = obs.astype(xp.int64, copy=False)
    bad = ((obs < 0) | (obs >= num_obs_xp[None, :])).ravel()
    if bool(bad.any()):
        agent, m = divmod(int(xp.argmax(bad)), n_mod)
        raise ObservationError(
            f"observation {int(obs[agent, m])} of agent {agent}, modality {m} is out of "
            f"range 0..{int(num_obs[m]) - 1}; no agent's beliefs were changed")
    return obs


# ------------------------------------------------------------------------------ stages
def infer_states(xp: ModuleType, lay: ModelLayout, cfg: InferenceConfig, like: Any,
                 prior: list[Any], num_iter: int, cdt: np.dtype) -> list[Any]:
    """pymdp's run_vanilla_fpi for every row (closed form for one factor), from the
    likelihood of each row's observation over the joint states. Under pymdp 1.x's semantics
    ``like`` is its logarithm (floored per modality), the prior is floored too, and every one
    of ``num_iter`` sweeps runs."""
    pymdp1 = lay.semantics == "pymdp1"
    if pymdp1:
        ln_prior = [xp.log(xp.maximum(p, PYMDP1_MINVAL)) for p in prior]
        if lay.n_factors == 1:
            return [softmax(xp, like + ln_prior[0])]
    if lay.n_factors == 1:
        post = (like + EPS) * (prior[0] + EPS)
        return [post * (1.0 / post.sum(axis=1, keepdims=True))]     # as the Numba step rounds
    m, n_factors = like.shape[0], lay.n_factors
    sizes = [int(s) for s in lay.num_states]
    lnL = like if pymdp1 else xp.log(like + EPS)
    lnL_t = lnL.reshape(m, *sizes)
    if not pymdp1:
        ln_prior = [xp.log(p + EPS) for p in prior]
    qs = [xp.full((m, s), 1.0 / s, dtype=cdt) for s in sizes]

    def entropy_terms(q: list[Any]) -> Any:
        return sum(((qf * xp.log(qf + EPS)) - qf * lp).sum(axis=1)
                   for qf, lp in zip(q, ln_prior, strict=True))

    def broadcast(q: Any, g: int) -> Any:
        shape = [m] + [1] * n_factors
        shape[1 + g] = sizes[g]
        return q.reshape(shape)

    prev_vfe = entropy_terms(qs)
    delta = xp.full(m, float(cfg.dF), dtype=cdt)
    active = xp.ones(m, dtype=bool)
    for _ in range(num_iter):
        active &= delta >= (-1.0 if pymdp1 else cfg.dF_tol)
        if not bool(active.any()):
            break
        new_qs = []
        for f in range(n_factors):
            w = lnL_t
            for g in range(n_factors):
                if g != f:
                    w = w * broadcast(qs[g], g)
            other = tuple(1 + g for g in range(n_factors) if g != f)
            new_qs.append(softmax(xp, w.sum(axis=other) + ln_prior[f]))
        accuracy = (lnL * outer_joint(new_qs)).sum(axis=1)
        vfe = entropy_terms(new_qs) - accuracy
        qs = [xp.where(active[:, None], nq, q) for nq, q in zip(new_qs, qs, strict=True)]
        delta = xp.where(active, xp.abs(prev_vfe - vfe), delta)
        prev_vfe = xp.where(active, vfe, prev_vfe)
    return qs


def select_actions(xp: ModuleType, lay: ModelLayout, cfg: InferenceConfig, q_pi: Any,
                   keys: Any, tick: int, first_action: Any, onehot: list[Any]) -> Any:
    """Marginal (or full-policy) action selection, deterministic or stochastic."""
    stochastic = cfg.action_selection == "stochastic"
    if cfg.sampling_mode == "full":
        if stochastic:
            p = softmax(xp, xp.log(q_pi + EPS) * cfg.alpha)
            best = draw(xp, p, uniforms_from_keys(xp, keys, tick, 0))
        else:
            best = first_max(xp, q_pi)
        return first_action[best]
    out = xp.empty((q_pi.shape[0], lay.n_factors), dtype=xp.int64)
    for f in range(lay.n_factors):
        marg = q_pi @ onehot[f]
        marg = marg / marg.sum(axis=1, keepdims=True)
        if stochastic:
            p = softmax(xp, xp.log(marg + EPS) * cfg.alpha)
            out[:, f] = draw(xp, p, uniforms_from_keys(xp, keys, tick, f))
        else:
            out[:, f] = first_max(xp, marg)
    return out


def first_max(xp: ModuleType, p: Any) -> Any:
    """Per row, the lowest index whose value is within ``TIE_TOL`` of the row's largest."""
    return xp.argmax(p >= p.max(axis=1, keepdims=True) - TIE_TOL, axis=1)


def draw(xp: ModuleType, p: Any, u: Any) -> Any:
    """Inverse-CDF draw per row (the Numba step's ``draw``): the first k with
    ``u < cumsum(p)[k]``, the last category absorbing rounding."""
    cdf = xp.cumsum(p, axis=1)[:, :-1]
    return (cdf <= u[:, None]).sum(axis=1).astype(xp.int64)
