"""GenerativeModel: the A, B, C, D, E arrays a population of agents shares, validated once.

Layout follows pymdp: ``A[m]`` has shape ``(O_m, S_f1, S_f2, ...)`` over the factors listed in
``A_factor_list[m]`` (all factors by default, as in pymdp 0.0.7.1), ``B[f]`` has shape
``(S_f, S_f, U_f)`` (or ``(S_f, S_d..., U_f)`` over ``B_factor_list[f]``), ``C[m]`` is
``(O_m,)`` or ``(O_m, T)`` (log-preferences), ``D[f]`` is
``(S_f,)`` and ``E`` is ``(n_policies,)``. Arrays are copied, made read-only and never
renormalised: a model that does not validate raises :class:`ModelError`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import ConfigError, ModelError
from engine.model.config import InferenceConfig
from engine.model.limits import check_policies, refuse_idle_actions
from engine.model.npz_io import MODEL_FORMAT, load_npz, npz_bytes
from engine.model.pymdp1_convert import is_pymdp1_agent, pymdp1_agent, pymdp1_model_arguments
from engine.model.pymdp_convert import pymdp_agent, pymdp_model_arguments
from engine.model.validation import (
    NORMALISATION_TOL,
    as_float_array,
    as_list,
    check_columns_normalised,
    check_nonnegative,
    check_state_axes,
    dirichlet_counts,
    factor_list,
    factor_list_or_empty,
    validate_policies,
)

__all__ = ["NORMALISATION_TOL", "GenerativeModel"]

ArrayList = Sequence[np.ndarray]


class GenerativeModel:
    """A validated, immutable generative model in pymdp's layout.

    Args:
        A: likelihood arrays, one per modality.
        B: transition arrays, one per factor, ``(S_f, S_f, U_f)`` (see ``B_factor_list``).
        C: log-preferences per modality (default zeros).
        D: initial state prior per factor (default uniform).
        E: prior over policies (default uniform); its length must match the policy set.
        pA, pB: optional Dirichlet parameters, same shapes as A and B.
        A_factor_list: for each modality, the factors its A depends on (default: all).
        B_factor_list: for each factor, the factors its transition depends on (default: each
            factor on itself, pymdp 0.0.7.1's model); ``B[f]`` is then
            ``(S_f, S_d1, ..., S_dk, U_f)`` over them (pymdp 1.x's ``B_dependencies``), and the
            prediction is mean-field: ``B[f]`` contracted with the marginals of those factors.
        control_fac_idx: controllable factors (default: those with more than one action).
            Policies give uncontrolled factors action 0.
        policies: explicit policy set, integer array ``(n_policies, policy_len, n_factors)``;
            default: every action sequence of the configured ``policy_len``.
    """

    def __init__(
        self,
        A: ArrayList,
        B: ArrayList,
        C: ArrayList | None = None,
        D: ArrayList | None = None,
        E: np.ndarray | None = None,
        pA: ArrayList | None = None,
        pB: ArrayList | None = None,
        A_factor_list: Sequence[Sequence[int]] | None = None,
        B_factor_list: Sequence[Sequence[int]] | None = None,
        control_fac_idx: Sequence[int] | None = None,
        policies: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> None:
        B_list = [as_float_array(f"B[{f}]", b) for f, b in enumerate(as_list("B", B))]
        if not B_list:
            raise ModelError("B", "is empty: a model needs at least one hidden-state factor")
        n_b = len(B_list)
        if B_factor_list is None:
            B_factor_list = [[f] for f in range(n_b)]
        if len(B_factor_list) != n_b:
            raise ModelError("B_factor_list", f"has {len(B_factor_list)} entries for {n_b} "
                             "factors")
        self.B_factor_list: tuple[tuple[int, ...], ...] = tuple(
            tuple(factor_list(f"B_factor_list[{f}]", deps, n_b))
            for f, deps in enumerate(B_factor_list))
        for f, b in enumerate(B_list):
            deps = self.B_factor_list[f]
            if b.ndim != 2 + len(deps):
                shape = "(S, S, U)" if deps == (f,) else f"(S_{f}, " + ", ".join(
                    f"S_{d}" for d in deps) + ", U)"
                raise ModelError(f"B[{f}]", f"must have {2 + len(deps)} dimensions {shape}, "
                                 f"got shape {b.shape}")
        self.num_states: tuple[int, ...] = tuple(b.shape[0] for b in B_list)
        for f, b in enumerate(B_list):
            expected = tuple(self.num_states[d] for d in self.B_factor_list[f])
            if b.shape[1:-1] != expected:
                what = ("square over states" if self.B_factor_list[f] == (f,) else
                        f"over the states of factors {list(self.B_factor_list[f])} {expected}")
                raise ModelError(f"B[{f}]", f"must be {what}, got shape {b.shape}")
            check_columns_normalised(f"B[{f}]", b)
        self.B: tuple[np.ndarray, ...] = tuple(B_list)
        self.num_controls: tuple[int, ...] = tuple(b.shape[-1] for b in B_list)
        n_factors = len(B_list)

        A_raw = as_list("A", A)
        if not A_raw:
            raise ModelError("A", "is empty: a model needs at least one modality")
        if A_factor_list is None:
            A_factor_list = [list(range(n_factors)) for _ in A_raw]
        if len(A_factor_list) != len(A_raw):
            raise ModelError("A_factor_list", f"has {len(A_factor_list)} entries for "
                             f"{len(A_raw)} modalities")
        self.A_factor_list: tuple[tuple[int, ...], ...] = tuple(
            tuple(factor_list(f"A_factor_list[{m}]", fl, n_factors))
            for m, fl in enumerate(A_factor_list)
        )
        A_list = []
        for m, a in enumerate(A_raw):
            arr = as_float_array(f"A[{m}]", a)
            check_state_axes(f"A[{m}]", arr, self.A_factor_list[m], self.num_states)
            check_columns_normalised(f"A[{m}]", arr)
            A_list.append(arr)
        self.A: tuple[np.ndarray, ...] = tuple(A_list)
        self.num_obs: tuple[int, ...] = tuple(a.shape[0] for a in A_list)


        if C is None:
            C_list = [np.zeros(o) for o in self.num_obs]
        else:
            C_list = [as_float_array(f"C[{m}]", c) for m, c in enumerate(as_list("C", C))]
        if len(C_list) != len(self.A):
            raise ModelError("C", f"has {len(C_list)} arrays for {len(self.A)} modalities")
        for m, c in enumerate(C_list):
            if c.ndim not in (1, 2) or c.shape[0] != self.num_obs[m]:
                raise ModelError(f"C[{m}]", f"must have shape ({self.num_obs[m]},) or "
                                 f"({self.num_obs[m]}, T), got {c.shape}")
            c.setflags(write=False)
        self.C: tuple[np.ndarray, ...] = tuple(C_list)

        if D is None:
            D_list = [np.full(s, 1.0 / s) for s in self.num_states]
        else:
            D_list = [as_float_array(f"D[{f}]", d) for f, d in enumerate(as_list("D", D))]
        if len(D_list) != n_factors:
            raise ModelError("D", f"has {len(D_list)} arrays for {n_factors} factors")
        for f, d in enumerate(D_list):
            if d.shape != (self.num_states[f],):
                raise ModelError(f"D[{f}]", f"must have shape ({self.num_states[f]},), "
                                 f"got {d.shape}")
            check_columns_normalised(f"D[{f}]", d)
            d.setflags(write=False)
        self.D: tuple[np.ndarray, ...] = tuple(D_list)

        self.pA = None if pA is None else dirichlet_counts("pA", pA, self.A, "A", "modalities")
        self.pB = None if pB is None else dirichlet_counts("pB", pB, self.B, "B", "factors")

        if control_fac_idx is None:
            control = [f for f in range(n_factors) if self.num_controls[f] > 1]
        else:
            control = factor_list_or_empty("control_fac_idx", control_fac_idx, n_factors)
        self.control_fac_idx: tuple[int, ...] = tuple(control)

        self.policies: np.ndarray | None = None
        if policies is not None:
            self.policies = validate_policies(policies, self.num_controls)

        self.E: np.ndarray | None = None
        if E is not None:
            e = as_float_array("E", E)
            if e.ndim != 1:
                raise ModelError("E", f"must be 1-D (n_policies,), got shape {e.shape}")
            check_nonnegative("E", e)
            if self.policies is not None and e.shape[0] != self.policies.shape[0]:
                raise ModelError("E", f"has {e.shape[0]} entries for "
                                 f"{self.policies.shape[0]} policies")
            self.E = e

        #: what ``engine.model.layout.layout_of`` derived from this model, by config
        self.derived_layouts: dict[tuple[Any, ...], Any] = {}
        self._hash: str | None = None


    # ----------------------------------------------------------------------------- shape facts
    @property
    def num_factors(self) -> int:
        return len(self.B)

    @property
    def num_modalities(self) -> int:
        return len(self.A)

    def policies_for(self, policy_len: int, control_fac_idx: Sequence[int] | None = None
                     ) -> np.ndarray:
        """The policy set for a horizon: the explicit one, or all sequences of joint actions
        (ConfigError, before any is enumerated, when there would be more than
        ``engine.model.limits.MAX_POLICIES``).

        Ordering matches pymdp's ``construct_policies``: ``itertools.product`` over
        (step 0 factor 0, step 0 factor 1, ..., step 1 factor 0, ...), last fastest.
        """
        if self.policies is not None:
            if self.policies.shape[1] != policy_len:
                raise ModelError("policies", f"have length {self.policies.shape[1]} but the "
                                 f"config asks for policy_len={policy_len}")
            return self.policies
        control = self.control_fac_idx if control_fac_idx is None else tuple(control_fac_idx)
        if control_fac_idx is not None:
            refuse_idle_actions(self.num_controls, control)
        check_policies(self.num_controls, control, policy_len)     # before enumerating them
        per_factor = [range(self.num_controls[f]) if f in control else range(1)
                      for f in range(self.num_factors)]
        combos = list(itertools.product(*(per_factor * policy_len)))
        out = np.array(combos, dtype=np.int64).reshape(len(combos), policy_len, self.num_factors)
        out.setflags(write=False)
        return out

    def prior_over_policies(self, n_policies: int) -> np.ndarray:
        """E, or the uniform prior over ``n_policies`` when none was given."""
        if self.E is None:
            return np.full(n_policies, 1.0 / n_policies)
        if self.E.shape[0] != n_policies:
            raise ModelError("E", f"has {self.E.shape[0]} entries for {n_policies} policies")
        return self.E

    # ----------------------------------------------------------------------------- derived
    def content_hash(self) -> str:
        """SHA-256 over every array and structural field: two equal models hash equally."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update(json.dumps(self._meta(), sort_keys=True).encode())
            for _, arr in self._named_arrays():
                digest.update(str(arr.shape).encode())
                digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
            self._hash = digest.hexdigest()
        return self._hash

    # ----------------------------------------------------------------------------- pymdp
    @classmethod
    def from_pymdp(cls, agent: Any) -> GenerativeModel:
        """The model of a pymdp ``Agent``: 0.0.7.1's (A, B, C, D, E, pA, pB and policies) or
        1.x's (batch element 0 of its arrays, which must equal every other element, with
        ``A_dependencies``, ``B_dependencies`` and its policies)."""
        if is_pymdp1_agent(agent):
            return cls(**pymdp1_model_arguments(agent))
        return cls(**pymdp_model_arguments(agent))

    def full_A(self) -> list[np.ndarray]:
        """A with every modality expanded over all factors (pymdp 0.0.7.1 has no A_factor_list)."""
        return [self._expand_over_factors(a, m) for m, a in enumerate(self.A)]

    def with_full_A(self) -> GenerativeModel:
        """This model with A (and pA) laid out over every factor, as pymdp 0.0.7.1 holds it."""
        if all(fl == tuple(range(self.num_factors)) for fl in self.A_factor_list):
            return self
        pA = None
        if self.pA is not None:
            pA = [self._expand_over_factors(p, m) for m, p in enumerate(self.pA)]
        return GenerativeModel(A=self.full_A(), B=self.B, C=self.C, D=self.D, E=self.E, pA=pA,
                               pB=self.pB, B_factor_list=self.B_factor_list,
                               control_fac_idx=self.control_fac_idx,
                               policies=self.policies)

    def with_priors(self, pA_scale: float | None = None, pB_scale: float | None = None
                    ) -> GenerativeModel:
        """This model with Dirichlet priors "like" its arrays (pymdp's ``dirichlet_like``):
        ``pA = pA_scale * A`` and ``pB = pB_scale * B`` where a scale is given; the others
        are kept."""
        for name, scale in (("pA_scale", pA_scale), ("pB_scale", pB_scale)):
            if scale is not None and not (np.isfinite(scale) and scale > 0):
                raise ConfigError(f"with_priors: {name} must be a finite number > 0, "
                                  f"got {scale!r}")
        if pA_scale is None and pB_scale is None:
            return self
        pA = self.pA if pA_scale is None else [pA_scale * np.asarray(a) for a in self.A]
        pB = self.pB if pB_scale is None else [pB_scale * np.asarray(b) for b in self.B]
        return GenerativeModel(A=self.A, B=self.B, C=self.C, D=self.D, E=self.E, pA=pA, pB=pB,
                               A_factor_list=self.A_factor_list,
                               B_factor_list=self.B_factor_list,
                               control_fac_idx=self.control_fac_idx, policies=self.policies)

    def _expand_over_factors(self, arr: np.ndarray, m: int) -> np.ndarray:
        deps = self.A_factor_list[m]
        if deps == tuple(range(self.num_factors)):
            return np.array(arr)
        order = np.argsort(deps)
        moved = np.transpose(arr, (0, *(1 + order)))
        shape = [arr.shape[0]] + [self.num_states[f] if f in deps else 1
                                  for f in range(self.num_factors)]
        full = [arr.shape[0], *self.num_states]
        return np.array(np.broadcast_to(moved.reshape(shape), full))

    def to_pymdp(self, config: InferenceConfig | None = None) -> Any:
        """A pymdp 0.0.7.1 ``Agent`` with this model and config (pymdp must be installed);
        ConfigError for transitions that depend on other factors, which 0.0.7.1 lacks."""
        if self.has_B_dependencies:
            raise ConfigError("to_pymdp: pymdp 0.0.7.1 has no transitions that depend on other "
                              "factors (B_factor_list); use to_pymdp1")
        return pymdp_agent(self, config)

    def to_pymdp1(self, config: InferenceConfig | None = None) -> Any:
        """A pymdp 1.x ``Agent`` (batch size 1) with this model and config (default:
        ``InferenceConfig.pymdp1()``); pymdp 1.x and JAX must be installed."""
        return pymdp1_agent(self, config or InferenceConfig.pymdp1(dtype="float64"))

    # ----------------------------------------------------------------------------- files
    def _meta(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "num_modalities": self.num_modalities,
            "num_factors": self.num_factors,
            "A_factor_list": [list(fl) for fl in self.A_factor_list],
            "B_factor_list": [list(fl) for fl in self.B_factor_list],
            "control_fac_idx": list(self.control_fac_idx),
            "has_E": self.E is not None,
            "has_pA": self.pA is not None,
            "has_pB": self.pB is not None,
            "has_policies": self.policies is not None,
        }

    def _named_arrays(self) -> list[tuple[str, np.ndarray]]:
        named: list[tuple[str, np.ndarray]] = []
        for key, arrays in (("A", self.A), ("B", self.B), ("C", self.C), ("D", self.D),
                            ("pA", self.pA), ("pB", self.pB)):
            if arrays is not None:
                named.extend((f"{key}_{i}", a) for i, a in enumerate(arrays))
        if self.E is not None:
            named.append(("E", self.E))
        if self.policies is not None:
            named.append(("policies", self.policies))
        return named

    def to_npz_bytes(self) -> bytes:
        """The ``.npz`` bytes :meth:`save` writes (tick logs carry them)."""
        return npz_bytes(self._meta(), self._named_arrays())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one ``.npz`` file (no pickles)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.to_npz_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_npz_bytes(cls, data: bytes, name: str = "<bytes>") -> GenerativeModel:
        """A model from :meth:`to_npz_bytes` output; ``name`` labels errors."""
        return load_npz(io.BytesIO(data), name, cls)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GenerativeModel:
        """Read a model written by :meth:`save`; a malformed file raises :class:`ModelError`."""
        return load_npz(os.fspath(path), os.fspath(path), cls)

    def __repr__(self) -> str:
        return (f"GenerativeModel(num_obs={list(self.num_obs)}, "
                f"num_states={list(self.num_states)}, "
                f"num_controls={list(self.num_controls)}, "
                f"A_factor_list={[list(f) for f in self.A_factor_list]}"
                + ("" if not self.has_B_dependencies else
                   f", B_factor_list={[list(f) for f in self.B_factor_list]}") + ")")

    @property
    def has_B_dependencies(self) -> bool:
        """Whether some factor's transition depends on factors other than itself."""
        return any(deps != (f,) for f, deps in enumerate(self.B_factor_list))
