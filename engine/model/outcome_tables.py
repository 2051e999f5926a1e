"""The tables the state information gain reads: p(outcome | joint state) and each joint
state's ambiguity, with the path the kernels take through them (``sparse``, ``dense`` or
``split``), for either pymdp generation's outcome space.

pymdp 0.0.7.1 takes the gain over the joint outcome of all modalities (their product);
pymdp 1.x sums it per modality, which is the same computation over every modality's outcomes
side by side (their concatenation): the entropy of a concatenation of distributions is the
sum of their entropies. The reasoning is in docs/architecture.md, "Information gain paths".
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ConfigError
from engine.model.constants import EXP_M16

if TYPE_CHECKING:
    from engine.model.generative_model import GenerativeModel

#: Joint (state x outcome) tables larger than this are refused with a clear error.
MAX_JOINT_TABLE = 50_000_000
#: The information gain reads a dense outcome table when at least this share of its entries
#: is non-zero (a scattered entry costs about ten times a dense one) ...
DENSE_GAIN_SHARE = 0.25
#: ... and the table has at most this many entries (32 MiB of float64).
MAX_DENSE_GAIN_TABLE = 4_000_000
#: A table of a several-factor model with at most this many entries is not read sparsely,
#: whatever its share of non-zeros: their walks run agents in lanes on dense tables
#: (kernels/numba/lane_walk.py), and so small a table costs little read whole.
SMALL_GAIN_TABLE = 4096
#: A modality whose columns are a constant plus at most this share of other entries is
#: "sparse plus a constant": the information gain adds the constant once per joint state.
MAX_RESIDUAL_SHARE = 0.25


def gain_outcome_count(num_obs: tuple[int, ...] | list[int], semantics: str) -> int:
    """Outcomes the gain's entropy runs over: the joint outcome's (pymdp 0.0.7.1), or every
    modality's side by side (pymdp 1.x)."""
    return int(np.sum(num_obs)) if semantics == "pymdp1" else int(np.prod(num_obs))


@dataclasses.dataclass(frozen=True)
class SplitTables:
    """One modality's columns as a constant plus other entries, over joint states, and the
    joint outcome of the other modalities."""

    const: np.ndarray
    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    rest: np.ndarray


@dataclasses.dataclass(frozen=True)
class OutcomeTables:
    """p(outcome | joint state) as CSR rows (``ptr``, ``idx``, ``val``), dense rows where the
    gain reads them densely, the split tables where it splits, and ``sum p ln p`` per joint
    state (``ambiguity``)."""

    n_outcomes: int
    ambiguity: np.ndarray
    ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    dense: np.ndarray
    split: SplitTables | None


def xlogx(p: np.ndarray) -> np.ndarray:
    """``p ln p`` entry by entry, 0 where ``p`` is 0."""
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def outcome_tables(model: GenerativeModel, jidx: np.ndarray, n_joint: int,
                   semantics: str) -> OutcomeTables:
    """The tables of ``model`` over its ``n_joint`` joint states (``jidx[m, j]``: modality
    m's compact column of joint state j) for ``semantics`` ``"pymdp0"`` or ``"pymdp1"``."""
    num_obs = [int(a.shape[0]) for a in model.A]
    per_modality = semantics == "pymdp1"
    n_outcomes = gain_outcome_count(num_obs, semantics)
    if n_joint * n_outcomes > MAX_JOINT_TABLE:
        what = "outcomes of all modalities" if per_modality else "joint outcomes"
        raise ConfigError(
            f"model too large for the state information gain: {n_joint} joint states x "
            f"{n_outcomes} {what} > {MAX_JOINT_TABLE} (pymdp has the same cost per policy "
            "step)")
    ambiguity = np.zeros(n_joint)
    ptr = np.zeros(n_joint + 1, dtype=np.int64)
    idx_parts, val_parts = [], []
    chunk = max(1, 4_000_000 // max(1, n_outcomes))
    for j0 in range(0, n_joint, chunk):
        js = np.arange(j0, min(n_joint, j0 + chunk))
        cols = [model.A[m].reshape(num_obs[m], -1)[:, jidx[m, js]].T for m in range(len(num_obs))]
        if per_modality:
            po = np.concatenate(cols, axis=1)                       # (chunk, sum O_m)
            ambiguity[js] = xlogx(po).sum(axis=1)
        else:
            po = np.ones((js.size, 1))
            for col in cols:
                po = (po[:, :, None] * col[:, None, :]).reshape(js.size, -1)
            ambiguity[js] = (po * np.log(po + EXP_M16)).sum(axis=1)
        nz_j, nz_o = np.nonzero(po)
        ptr[js + 1] = np.bincount(nz_j, minlength=js.size)
        idx_parts.append(nz_o.astype(np.int64))
        val_parts.append(po[nz_j, nz_o])
    ptr = np.cumsum(ptr).astype(np.int64)
    idx = np.concatenate(idx_parts)
    val = np.concatenate(val_parts)
    path, split_m = choose_gain_path(model, jidx, val.size, n_joint, n_outcomes,
                                     allow_split=not per_modality)
    dense = np.zeros((0, 0))
    if path == "dense":
        dense = np.zeros((n_joint, n_outcomes))
        dense[np.repeat(np.arange(n_joint), np.diff(ptr)), idx] = val
    split = split_tables(model, jidx, split_m) if path == "split" else None
    return OutcomeTables(n_outcomes=n_outcomes, ambiguity=ambiguity, ptr=ptr, idx=idx,
                         val=val, dense=dense, split=split)


def column_constants(a: np.ndarray) -> np.ndarray:
    """Each column's most frequent value (ties: the smallest), for ``a`` of shape (O, K)."""
    ordered = np.sort(a, axis=0)
    const = np.empty(a.shape[1])
    for k in range(a.shape[1]):
        values, counts = np.unique(ordered[:, k], return_counts=True)
        const[k] = values[int(np.argmax(counts))]
    return const


def choose_gain_path(model: GenerativeModel, jidx: np.ndarray, nnz: int, n_joint: int,
                     n_joint_obs: int, allow_split: bool = True) -> tuple[str, int]:
    """The information gain's path from the outcome table's structure, and the modality a
    ``split`` path splits off (-1 otherwise). Costs are per tree node with every state live,
    in cycles measured on one core (docs/architecture.md, "Information gain paths")."""
    table = n_joint * n_joint_obs
    small = model.num_factors > 1 and table <= SMALL_GAIN_TABLE
    if nnz < DENSE_GAIN_SHARE * table and not small:
        return "sparse", -1
    best, best_cost = -1, np.inf
    for m, a in enumerate(model.A if allow_split else ()):
        a2 = a.reshape(a.shape[0], -1)
        const = column_constants(a2)
        residual = np.count_nonzero(a2 != const[None, :]) / a2.size
        if residual > MAX_RESIDUAL_SHARE or not np.any(const):
            continue
        rest = n_joint_obs // a.shape[0]
        cost = 1.5 * n_joint * rest * (2.0 + residual * a.shape[0])
        if cost < best_cost:
            best, best_cost = m, cost
    dense_cost = 0.25 * table if table <= MAX_DENSE_GAIN_TABLE else np.inf
    if best >= 0 and best_cost <= dense_cost:
        return "split", best
    return ("dense", -1) if np.isfinite(dense_cost) else ("sparse", -1)


def split_tables(model: GenerativeModel, jidx: np.ndarray, m: int) -> SplitTables:
    """:class:`SplitTables` for modality ``m`` over the joint states ``jidx`` index."""
    a2 = model.A[m].reshape(model.A[m].shape[0], -1)
    const_k = column_constants(a2)
    cols = jidx[m]
    const = const_k[cols]
    residual = a2[:, cols] - const[None, :]                     # (O_m, n_joint)
    nz_j, nz_o = np.nonzero(residual.T != 0.0)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(nz_j, minlength=cols.size))])
    rest = np.ones((cols.size, 1))
    for g, a in enumerate(model.A):
        if g != m:
            col = a.reshape(a.shape[0], -1)[:, jidx[g]].T             # (n_joint, O_g)
            rest = (rest[:, :, None] * col[:, None, :]).reshape(cols.size, -1)
    return SplitTables(const=const, ptr=ptr, idx=nz_o, val=residual[nz_o, nz_j], rest=rest)
