"""pymdp 1.x's log-likelihood tables for state inference over several factors, grouped:
modalities that read the same factors add up to one table per group, precomputed for every
combination of the group's observations (``docs/architecture.md``, "Fixed-point sweeps by
contraction").
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from engine.model.constants import PYMDP1_MINVAL

if TYPE_CHECKING:
    from engine.model.generative_model import GenerativeModel

#: A group's table (observation combinations x its factors' joint states) stays under this
#: many floats; a modality that would take it over starts a group of its own.
MAX_GROUP_TABLE = 1 << 18


@dataclasses.dataclass(frozen=True)
class LikelihoodGroups:
    """Groups of modalities over the same factors and their summed log tables."""

    deps: np.ndarray      # (G, F) the group's factors (A_factor_list order), padded with -1
    mods: np.ndarray      # (G, M) its modalities in ascending order (first slowest in the
                          # observation index), padded with -1
    offset: np.ndarray    # (G + 1,) start of each group's table in ``flat``
    cols: np.ndarray      # (G,) joint states of the group's factors
    flat: np.ndarray      # each group's (prod O_m, cols) table of sum_m max(ln A_m, ln MINVAL)


def log_floored(a: np.ndarray) -> np.ndarray:
    """pymdp 1.x's ``log_stable``: ``max(ln a, ln MINVAL)``, entry by entry."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(a), np.log(PYMDP1_MINVAL))


def likelihood_groups(model: GenerativeModel) -> LikelihoodGroups:
    """The grouped tables of ``model`` (pymdp 1.x semantics, several factors)."""
    n_factors, n_mod = model.num_factors, model.num_modalities
    members: list[list[int]] = []
    keys: list[tuple[int, ...]] = []
    sizes: list[int] = []
    for m, deps in enumerate(model.A_factor_list):
        key = tuple(int(f) for f in deps)
        cols = int(np.prod([model.num_states[f] for f in key]))
        for g, (k, group) in enumerate(zip(keys, members, strict=True)):
            if k == key and sizes[g] * model.num_obs[m] <= MAX_GROUP_TABLE:
                group.append(m)
                sizes[g] *= model.num_obs[m]
                break
        else:
            keys.append(key)
            members.append([m])
            sizes.append(cols * model.num_obs[m])
    n_groups = len(keys)
    deps = np.full((n_groups, n_factors), -1, dtype=np.int64)
    mods = np.full((n_groups, n_mod), -1, dtype=np.int64)
    tables = []
    for g, (key, group) in enumerate(zip(keys, members, strict=True)):
        deps[g, :len(key)] = key
        mods[g, :len(group)] = group
        cols = int(np.prod([model.num_states[f] for f in key]))
        table = np.zeros((1, cols))
        for m in group:
            ln_a = log_floored(np.asarray(model.A[m], dtype=np.float64).reshape(-1, cols))
            table = (table[:, None, :] + ln_a[None, :, :]).reshape(-1, cols)
        tables.append(table.ravel())
    offset = np.concatenate([[0], np.cumsum([t.size for t in tables])]).astype(np.int64)
    cols_of = np.array([int(np.prod([model.num_states[f] for f in k])) for k in keys],
                       dtype=np.int64)
    return LikelihoodGroups(deps=deps, mods=mods, offset=offset, cols=cols_of,
                            flat=np.concatenate(tables))
