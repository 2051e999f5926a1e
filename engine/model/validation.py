"""Checks every generative-model array goes through: dtype, finiteness, normalisation, shapes,
factor lists and policies. Each raises :class:`ModelError` naming the array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import ModelError

#: Largest tolerated |column sum - 1| of A, B and D (pymdp's ``np.allclose`` accepts about this).
NORMALISATION_TOL = 1e-5


def as_list(name: str, arrays: Any) -> list[Any]:
    """Accept a list/tuple of arrays, a pymdp object array, or a single array (one item)."""
    if isinstance(arrays, np.ndarray) and arrays.dtype != object:
        return [arrays]
    if isinstance(arrays, (list, tuple, np.ndarray)):
        return list(arrays)
    raise ModelError(name, f"must be a list of arrays, got {type(arrays).__name__}")


def as_float_array(name: str, value: Any) -> np.ndarray:
    """A read-only float64 copy of ``value``: real, finite, no empty dimension."""
    kind = getattr(getattr(value, "dtype", None), "kind", "O")
    if kind not in "biufO":  # complex, strings, dates: casting would drop or invent values
        raise ModelError(name, f"must hold real numbers, got dtype {value.dtype}")
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        dtype = getattr(value, "dtype", type(value).__name__)
        raise ModelError(name, f"cannot be cast to float64 (dtype {dtype}): {exc}") from None
    if arr.dtype == object:
        raise ModelError(name, "is a ragged or object array, expected numbers")
    if arr.size == 0 or 0 in arr.shape:
        raise ModelError(name, f"has an empty dimension (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ModelError(name, f"holds a non-finite value ({arr[index]})", index)
    arr.setflags(write=False)
    return arr


def check_nonnegative(name: str, arr: np.ndarray) -> None:
    """Every entry of ``arr`` is >= 0."""
    neg = arr < 0
    if neg.any():
        index = tuple(int(i) for i in np.argwhere(neg)[0])
        raise ModelError(name, f"holds a negative entry ({arr[index]})", index)


def check_columns_normalised(name: str, arr: np.ndarray) -> None:
    """Non-negative, and every column (axis 0) sums to 1 within ``NORMALISATION_TOL``."""
    check_nonnegative(name, arr)
    sums = arr.sum(axis=0)
    err = np.abs(sums - 1.0)
    if (err > NORMALISATION_TOL).any():
        column = tuple(int(i) for i in np.unravel_index(int(np.argmax(err)), sums.shape))
        raise ModelError(
            name,
            f"column {column} sums to {float(sums[column]):.10g}, not 1 (tolerance "
            f"{NORMALISATION_TOL}); agentloop never renormalises a model",
            "[:, " + ", ".join(map(str, column)) + "]" if column else None,
        )


def factor_list(name: str, value: Any, n_factors: int) -> list[int]:
    """A non-empty list of distinct factor indices in ``0..n_factors - 1``."""
    try:
        items = [int(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise ModelError(name, f"must be a list of factor indices, got {value!r}") from None
    if not items:
        raise ModelError(name, "is empty: every modality depends on at least one factor")
    for i, f in enumerate(items):
        if not 0 <= f < n_factors:
            raise ModelError(name, f"factor index {f} out of range 0..{n_factors - 1}", i)
    if len(set(items)) != len(items):
        raise ModelError(name, f"repeats a factor: {items}")
    return items


def factor_list_or_empty(name: str, value: Sequence[int], n_factors: int) -> list[int]:
    """As :func:`factor_list`, but an empty list is allowed."""
    items = list(value)
    return [] if not items else factor_list(name, items, n_factors)


def check_state_axes(name: str, arr: np.ndarray, deps: Sequence[int],
                     num_states: Sequence[int]) -> None:
    """``arr`` is ``(O, S_f...)`` over the factors ``deps`` (an A array or its pA)."""
    expected = tuple(num_states[f] for f in deps)
    if arr.ndim != 1 + len(deps) or arr.shape[1:] != expected:
        raise ModelError(name, f"must have shape (O, {', '.join(map(str, expected))}) "
                         f"for factors {list(deps)}, got {arr.shape}")


def validate_policies(policies: Any, num_controls: Sequence[int]) -> np.ndarray:
    """An explicit policy set as read-only int64 ``(n_policies, policy_len, n_factors)``."""
    num_factors = len(num_controls)
    try:
        arr = np.array([np.asarray(p) for p in policies] if not isinstance(policies, np.ndarray)
                       else policies)
    except ValueError:
        raise ModelError("policies", "are ragged: every policy needs the same shape") from None
    if arr.ndim != 3 or arr.shape[2] != num_factors or arr.shape[0] == 0:
        raise ModelError("policies", f"must have shape (n_policies, policy_len, "
                         f"{num_factors}), got {arr.shape}")
    whole = arr.dtype.kind in "biu" or (arr.dtype.kind == "f" and bool(
        (np.isfinite(arr) & (np.abs(arr) < 2**62) & (arr == np.trunc(arr))).all()))
    if not whole:
        raise ModelError("policies", f"must hold integer actions, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    for f in range(num_factors):
        bad = (arr[:, :, f] < 0) | (arr[:, :, f] >= num_controls[f])
        if bad.any():
            p, t = (int(i) for i in np.argwhere(bad)[0])
            raise ModelError("policies", f"action {arr[p, t, f]} of factor {f} is out of "
                             f"range 0..{num_controls[f] - 1}", (p, t, f))
    arr.setflags(write=False)
    return arr


def dirichlet_counts(name: str, given: Any, like: Sequence[np.ndarray], like_name: str,
                     unit: str) -> tuple[np.ndarray, ...]:
    """``pA`` or ``pB``: one non-negative float array per array of ``like`` (``A`` or ``B``),
    each of its shape; ``unit`` names what the arrays are per (modalities, factors)."""
    counts = [as_float_array(f"{name}[{i}]", c) for i, c in enumerate(as_list(name, given))]
    if len(counts) != len(like):
        raise ModelError(name, f"has {len(counts)} arrays for {len(like)} {unit}")
    for i, c in enumerate(counts):
        if c.shape != like[i].shape:
            raise ModelError(f"{name}[{i}]", f"must have {like_name}[{i}]'s shape "
                             f"{like[i].shape}, got {c.shape}")
        check_nonnegative(f"{name}[{i}]", c)
        empty = np.argwhere(c.sum(axis=0) <= 0)
        if empty.size:
            raise ModelError(f"{name}[{i}]", f"column {tuple(int(k) for k in empty[0])} sums to "
                             f"0: the {like_name} normalised from it would be undefined")
    return tuple(counts)
