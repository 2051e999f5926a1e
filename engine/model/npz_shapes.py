"""The shapes a model file declares (its members' npy headers), checked against its ``meta``
and against each other before any array is loaded: B gives the states and actions, A, C, D,
pA, pB, E and the policies must agree with them."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.model.limits import MAX_POLICIES

Headers = dict[str, tuple[tuple[int, ...], np.dtype]]


def check_declared_shapes(meta: dict[str, Any], headers: Headers, name: str) -> list[str]:
    """The members the model needs (ModelError, labelled ``name``, for a malformed ``meta``,
    a missing member or declared shapes that cannot make a model)."""
    try:
        n_m, n_f = int(meta["num_modalities"]), int(meta["num_factors"])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"{name}:meta", f"num_modalities and num_factors must be whole "
                         f"numbers ({exc})") from None
    except KeyError as exc:
        raise ModelError(f"{name}:meta", f"is missing the field {exc}") from None
    for key in ("A_factor_list", "control_fac_idx"):
        if key in meta and not isinstance(meta[key], list):
            raise ModelError(f"{name}:meta", f"{key} must be a list, got {meta[key]!r}")
    try:
        optional = {flag: bool(meta[flag]) for flag in ("has_E", "has_pA", "has_pB",
                                                         "has_policies")}
        meta["A_factor_list"], meta["control_fac_idx"]  # noqa: B018 (both must be there)
    except KeyError as exc:
        raise ModelError(f"{name}:meta", f"is missing the field {exc}") from None
    wanted: list[str] = []

    def need(key: str) -> tuple[int, ...]:
        if key not in headers:
            raise ModelError(name, f"is missing the array {key!r}")
        wanted.append(key)
        return headers[key][0]

    A = [need(f"A_{m}") for m in range(n_m)]
    B = [need(f"B_{f}") for f in range(n_f)]
    C = [need(f"C_{m}") for m in range(n_m)]
    D = [need(f"D_{f}") for f in range(n_f)]
    E = need("E") if optional["has_E"] else None
    pA = [need(f"pA_{m}") for m in range(n_m)] if optional["has_pA"] else None
    pB = [need(f"pB_{f}") for f in range(n_f)] if optional["has_pB"] else None
    policies = need("policies") if optional["has_policies"] else None
    if policies is not None and len(policies) == 3 and policies[0] > MAX_POLICIES:
        raise ModelError(f"{name}:policies", f"declares {policies[0]:,} policies, more than "
                         f"agentloop's limit of {MAX_POLICIES:,}")
    if not all(len(b) == 3 and b[0] == b[1] for b in B):
        return wanted                   # the model's own checks name the malformed B
    states = [b[0] for b in B]

    def expect(key: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
        if shape != expected:
            raise ModelError(f"{name}:{key}", f"declares shape {shape}; the model's other "
                             f"arrays make it {expected}")

    for f, d in enumerate(D):
        expect(f"D_{f}", d, (states[f],))
    if pB is not None:
        for f, (pb, b) in enumerate(zip(pB, B, strict=True)):
            expect(f"pB_{f}", pb, b)
    deps = _factor_lists(meta["A_factor_list"], n_m, n_f)
    for m, a in enumerate(A):
        if deps is not None and a:
            expect(f"A_{m}", a, (a[0], *(states[f] for f in deps[m])))
        if a and C[m] and C[m][0] != a[0]:
            expect(f"C_{m}", C[m], (a[0], *C[m][1:]))
        if pA is not None:
            expect(f"pA_{m}", pA[m], a)
    if E is not None and policies is not None and policies:
        expect("E", E, (policies[0],))
    return wanted


def _factor_lists(value: Any, n_m: int, n_f: int) -> list[list[int]] | None:
    """``A_factor_list`` when it is well formed (else None: the model's checks name it)."""
    if value is None:
        return [list(range(n_f))] * n_m
    try:
        lists = [[int(f) for f in deps] for deps in value]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(lists) != n_m or any(not 0 <= f < n_f for deps in lists for f in deps):
        return None
    return lists
