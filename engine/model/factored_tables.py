"""pymdp 1.x's policy values from factor marginals: per-modality tables, and whether a model's
walk takes them.

In pymdp 1.x's semantics a node's utility and information gain are sums over modalities, each
of which reads only its own factors (``A_factor_list``): its predicted outcome is A_m against
the joint belief of those factors, never of every factor. The walk can then skip the node's
joint belief; this module decides, from the model's structure, whether that costs less than
the joint-belief walks, and builds the tables it reads (``docs/architecture.md``, "Factored
policy values").
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from engine.model.constants import LANE_WALK_FLOATS, LANES
from engine.model.outcome_tables import xlogx
from engine.model.shared_tail import head_factors

if TYPE_CHECKING:
    from engine.model.generative_model import GenerativeModel

#: A modality's A is read through its non-zeros when fewer than this share of them are.
SPARSE_SHARE = 0.25
#: The cost of a logarithm in multiply-adds, for the path choice.
LOG_COST = 4
#: How many times less a multiply-add of the shared-tail walk in lanes costs than one of the
#: factored walk, which values one agent at a time (measured: docs/architecture.md,
#: "Factored policy values (pymdp 1.x)").
LANE_GAIN = 4


@dataclasses.dataclass(frozen=True)
class FactoredTables:
    """Per-modality tables of the factored walk; empty when the walk does not take it."""

    deps: np.ndarray        # (M, F) A_factor_list, padded with -1
    amb: np.ndarray         # sum_o A_m ln A_m per compact column, modality after modality
    amb_offset: np.ndarray  # (M + 1,)
    sparse: np.ndarray      # (M,) bool: the modality is read through row lists
    ptr: np.ndarray         # (sum O_m + 1,) each outcome row's non-zeros (sparse modalities)
    col: np.ndarray
    val: np.ndarray
    reason: str = ""

    @property
    def used(self) -> bool:
        return self.sparse.shape[0] > 0


def empty_tables(n_factors: int, reason: str = "") -> FactoredTables:
    """The tables of a layout whose walk uses joint beliefs."""
    return FactoredTables(np.zeros((0, n_factors), dtype=np.int64), np.zeros(0),
                          np.zeros(1, dtype=np.int64), np.zeros(0, dtype=bool),
                          np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                          np.zeros(0), reason)


def _columns(model: GenerativeModel, m: int) -> np.ndarray:
    a = np.asarray(model.A[m], dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def factored_cost(model: GenerativeModel) -> int:
    """Multiply-adds of one node's value from factor marginals: per modality, its factors'
    joint belief, the ambiguity, the predicted outcome and its entropy."""
    total = 0
    for m in range(model.num_modalities):
        a = _columns(model, m)
        nnz = int(np.count_nonzero(a))
        reads = nnz if nnz < SPARSE_SHARE * a.size else a.size
        total += reads + 2 * a.shape[1] + LOG_COST * a.shape[0]
    return total


def joint_cost(model: GenerativeModel, node_depth: np.ndarray, node_action: np.ndarray,
               B_deps: np.ndarray, outcomes_per_state: float, dense: bool = False) -> int:
    """Multiply-adds of one node's value from its joint belief (the tree walk), or from its
    head factors' joint belief against per-step tables (the shared-tail walk); a shared-tail
    walk over a ``dense`` table whose tables fit the lanes' scratch runs :data:`LANES` agents
    side by side and counts :data:`LANE_GAIN` times less."""
    num_states = np.asarray(model.num_states, dtype=np.int64)
    h = head_factors.py_func(num_states, node_depth, node_action, B_deps)
    n_states = int(np.prod(num_states[:h]))
    n_outcomes = int(sum(model.num_obs))
    cost = n_states * (outcomes_per_state + 2) + LOG_COST * n_outcomes
    horizon = int(node_depth.max()) + 1 if node_depth.size else 1
    if dense and h < len(num_states) and (
            LANES * horizon * n_states * (outcomes_per_state + 2) <= LANE_WALK_FLOATS):
        cost /= LANE_GAIN
    return int(cost)


def factored_tables(model: GenerativeModel, node_depth: np.ndarray, node_action: np.ndarray,
                    B_deps: np.ndarray, outcomes_per_state: float,
                    dense: bool = False) -> FactoredTables:
    """The factored walk's tables for a pymdp 1.x layout of ``model`` when that walk costs
    less than the joint-belief walks (``outcomes_per_state``: the non-zero outcomes a joint
    state's row of the gain table holds), else empty tables; ``reason`` says which and why."""
    n_factors = model.num_factors
    if n_factors == 1:
        return empty_tables(n_factors)
    mine = factored_cost(model)
    theirs = joint_cost(model, node_depth, node_action, B_deps, outcomes_per_state, dense)
    costs = f"{mine:,} against {theirs:,} multiply-adds a node"
    if mine >= theirs:
        return empty_tables(n_factors, f"joint beliefs cost less: {costs}")
    deps = np.full((model.num_modalities, n_factors), -1, dtype=np.int64)
    amb, sparse, ptr, col, val = [], [], [0], [], []
    for m in range(model.num_modalities):
        deps[m, :len(model.A_factor_list[m])] = model.A_factor_list[m]
        a = _columns(model, m)
        amb.append(xlogx(a).sum(axis=0))
        is_sparse = np.count_nonzero(a) < SPARSE_SHARE * a.size
        sparse.append(is_sparse)
        for row in a:
            nz = np.nonzero(row)[0] if is_sparse else np.zeros(0, dtype=np.int64)
            col.append(nz)
            val.append(row[nz])
            ptr.append(ptr[-1] + nz.size)
    return FactoredTables(
        deps=deps, amb=np.concatenate(amb),
        amb_offset=np.concatenate([[0], np.cumsum([x.size for x in amb])]).astype(np.int64),
        sparse=np.array(sparse, dtype=bool), ptr=np.array(ptr, dtype=np.int64),
        col=np.concatenate(col).astype(np.int64), val=np.concatenate(val),
        reason=f"per-modality tables cost less: {costs}")
