"""GenerativeModel: the A, B, C, D, E arrays a population of agents shares, validated once.

Layout follows pymdp: ``A[m]`` has shape ``(O_m, S_f1, S_f2, ...)`` over the factors listed in
``A_factor_list[m]`` (all factors by default, as in pymdp 0.0.7.1), ``B[f]`` has shape
``(S_f, S_f, U_f)``, ``C[m]`` is ``(O_m,)`` or ``(O_m, T)`` (log-preferences), ``D[f]`` is
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

from engine.errors import ModelError
from engine.model.config import InferenceConfig

#: Largest tolerated |column sum - 1| of A, B and D (pymdp's ``np.allclose`` accepts about this).
NORMALISATION_TOL = 1e-5

ArrayList = Sequence[np.ndarray]


def _as_list(name: str, arrays: Any) -> list[Any]:
    """Accept a list/tuple of arrays, a pymdp object array, or a single array (one item)."""
    if isinstance(arrays, np.ndarray) and arrays.dtype != object:
        return [arrays]
    if isinstance(arrays, (list, tuple, np.ndarray)):
        return list(arrays)
    raise ModelError(name, f"must be a list of arrays, got {type(arrays).__name__}")


def _as_float_array(name: str, value: Any) -> np.ndarray:
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


def _check_nonnegative(name: str, arr: np.ndarray) -> None:
    neg = arr < 0
    if neg.any():
        index = tuple(int(i) for i in np.argwhere(neg)[0])
        raise ModelError(name, f"holds a negative entry ({arr[index]})", index)


def _check_columns_normalised(name: str, arr: np.ndarray) -> None:
    _check_nonnegative(name, arr)
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


def _factor_list(name: str, value: Any, n_factors: int) -> list[int]:
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


class GenerativeModel:
    """A validated, immutable generative model in pymdp's layout.

    Args:
        A: likelihood arrays, one per modality.
        B: transition arrays, one per factor, ``(S_f, S_f, U_f)``.
        C: log-preferences per modality (default zeros).
        D: initial state prior per factor (default uniform).
        E: prior over policies (default uniform); its length must match the policy set.
        pA, pB: optional Dirichlet parameters, same shapes as A and B.
        A_factor_list: for each modality, the factors its A depends on (default: all).
        B_factor_list: for each factor, the factors its transition depends on; only
            ``[[0], [1], ...]`` (each factor on itself, pymdp 0.0.7.1's model) is supported.
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
        B_list = [_as_float_array(f"B[{f}]", b) for f, b in enumerate(_as_list("B", B))]
        if not B_list:
            raise ModelError("B", "is empty: a model needs at least one hidden-state factor")
        for f, b in enumerate(B_list):
            if b.ndim != 3:
                raise ModelError(f"B[{f}]",
                                 f"must have 3 dimensions (S, S, U), got shape {b.shape}")
            if b.shape[0] != b.shape[1]:
                raise ModelError(f"B[{f}]", f"must be square over states, got shape {b.shape}")
            _check_columns_normalised(f"B[{f}]", b)
        self.B: tuple[np.ndarray, ...] = tuple(B_list)
        self.num_states: tuple[int, ...] = tuple(b.shape[0] for b in B_list)
        self.num_controls: tuple[int, ...] = tuple(b.shape[2] for b in B_list)
        n_factors = len(B_list)

        A_raw = _as_list("A", A)
        if not A_raw:
            raise ModelError("A", "is empty: a model needs at least one modality")
        if A_factor_list is None:
            A_factor_list = [list(range(n_factors)) for _ in A_raw]
        if len(A_factor_list) != len(A_raw):
            raise ModelError("A_factor_list", f"has {len(A_factor_list)} entries for "
                             f"{len(A_raw)} modalities")
        self.A_factor_list: tuple[tuple[int, ...], ...] = tuple(
            tuple(_factor_list(f"A_factor_list[{m}]", fl, n_factors))
            for m, fl in enumerate(A_factor_list)
        )
        A_list = []
        for m, a in enumerate(A_raw):
            arr = _as_float_array(f"A[{m}]", a)
            self._check_state_axes(f"A[{m}]", arr, m)
            _check_columns_normalised(f"A[{m}]", arr)
            A_list.append(arr)
        self.A: tuple[np.ndarray, ...] = tuple(A_list)
        self.num_obs: tuple[int, ...] = tuple(a.shape[0] for a in A_list)

        if B_factor_list is not None:
            if len(B_factor_list) != n_factors:
                raise ModelError("B_factor_list", f"has {len(B_factor_list)} entries for "
                                 f"{n_factors} factors")
            for f, deps in enumerate(B_factor_list):
                deps = _factor_list(f"B_factor_list[{f}]", deps, n_factors)
                if deps != [f]:
                    raise ModelError(f"B_factor_list[{f}]", f"transitions that depend on other "
                                     f"factors ({deps}) are not supported; use [{f}]")
        self.B_factor_list: tuple[tuple[int, ...], ...] = tuple((f,) for f in range(n_factors))

        if C is None:
            C_list = [np.zeros(o) for o in self.num_obs]
        else:
            C_list = [_as_float_array(f"C[{m}]", c) for m, c in enumerate(_as_list("C", C))]
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
            D_list = [_as_float_array(f"D[{f}]", d) for f, d in enumerate(_as_list("D", D))]
        if len(D_list) != n_factors:
            raise ModelError("D", f"has {len(D_list)} arrays for {n_factors} factors")
        for f, d in enumerate(D_list):
            if d.shape != (self.num_states[f],):
                raise ModelError(f"D[{f}]", f"must have shape ({self.num_states[f]},), "
                                 f"got {d.shape}")
            _check_columns_normalised(f"D[{f}]", d)
            d.setflags(write=False)
        self.D: tuple[np.ndarray, ...] = tuple(D_list)

        self.pA: tuple[np.ndarray, ...] | None = None
        if pA is not None:
            pA_list = [_as_float_array(f"pA[{m}]", p) for m, p in enumerate(_as_list("pA", pA))]
            if len(pA_list) != len(self.A):
                raise ModelError("pA", f"has {len(pA_list)} arrays for {len(self.A)} modalities")
            for m, p in enumerate(pA_list):
                if p.shape != self.A[m].shape:
                    raise ModelError(f"pA[{m}]", f"must have A[{m}]'s shape {self.A[m].shape}, "
                                     f"got {p.shape}")
                _check_nonnegative(f"pA[{m}]", p)
            self.pA = tuple(pA_list)
        self.pB: tuple[np.ndarray, ...] | None = None
        if pB is not None:
            pB_list = [_as_float_array(f"pB[{f}]", p) for f, p in enumerate(_as_list("pB", pB))]
            if len(pB_list) != n_factors:
                raise ModelError("pB", f"has {len(pB_list)} arrays for {n_factors} factors")
            for f, p in enumerate(pB_list):
                if p.shape != self.B[f].shape:
                    raise ModelError(f"pB[{f}]", f"must have B[{f}]'s shape {self.B[f].shape}, "
                                     f"got {p.shape}")
                _check_nonnegative(f"pB[{f}]", p)
            self.pB = tuple(pB_list)

        if control_fac_idx is None:
            control = [f for f in range(n_factors) if self.num_controls[f] > 1]
        else:
            control = _factor_list_or_empty("control_fac_idx", control_fac_idx, n_factors)
        self.control_fac_idx: tuple[int, ...] = tuple(control)

        self.policies: np.ndarray | None = None
        if policies is not None:
            self.policies = self._validate_policies(policies)

        self.E: np.ndarray | None = None
        if E is not None:
            e = _as_float_array("E", E)
            if e.ndim != 1:
                raise ModelError("E", f"must be 1-D (n_policies,), got shape {e.shape}")
            _check_nonnegative("E", e)
            if self.policies is not None and e.shape[0] != self.policies.shape[0]:
                raise ModelError("E", f"has {e.shape[0]} entries for "
                                 f"{self.policies.shape[0]} policies")
            self.E = e

        #: what ``engine.model.layout.layout_of`` derived from this model, by config
        self.derived_layouts: dict[tuple[Any, ...], Any] = {}
        self._hash: str | None = None

    # ----------------------------------------------------------------------------- validation
    def _check_state_axes(self, name: str, arr: np.ndarray, m: int) -> None:
        deps = self.A_factor_list[m]
        expected = tuple(self.num_states[f] for f in deps)
        if arr.ndim != 1 + len(deps) or arr.shape[1:] != expected:
            raise ModelError(name, f"must have shape (O, {', '.join(map(str, expected))}) "
                             f"for factors {list(deps)}, got {arr.shape}")

    def _validate_policies(self, policies: Any) -> np.ndarray:
        try:
            arr = np.array([np.asarray(p) for p in policies] if not isinstance(policies, np.ndarray)
                           else policies)
        except ValueError:
            raise ModelError("policies", "are ragged: every policy needs the same shape") from None
        if arr.ndim != 3 or arr.shape[2] != self.num_factors or arr.shape[0] == 0:
            raise ModelError("policies", f"must have shape (n_policies, policy_len, "
                             f"{self.num_factors}), got {arr.shape}")
        whole = arr.dtype.kind in "biu" or (arr.dtype.kind == "f" and bool(
            (np.isfinite(arr) & (np.abs(arr) < 2**62) & (arr == np.trunc(arr))).all()))
        if not whole:
            raise ModelError("policies", f"must hold integer actions, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        for f in range(self.num_factors):
            bad = (arr[:, :, f] < 0) | (arr[:, :, f] >= self.num_controls[f])
            if bad.any():
                p, t = (int(i) for i in np.argwhere(bad)[0])
                raise ModelError("policies", f"action {arr[p, t, f]} of factor {f} is out of "
                                 f"range 0..{self.num_controls[f] - 1}", (p, t, f))
        arr.setflags(write=False)
        return arr

    # ----------------------------------------------------------------------------- shape facts
    @property
    def num_factors(self) -> int:
        return len(self.B)

    @property
    def num_modalities(self) -> int:
        return len(self.A)

    def policies_for(self, policy_len: int, control_fac_idx: Sequence[int] | None = None
                     ) -> np.ndarray:
        """The policy set for a horizon: the explicit one, or all sequences of joint actions.

        Ordering matches pymdp's ``construct_policies``: ``itertools.product`` over
        (step 0 factor 0, step 0 factor 1, ..., step 1 factor 0, ...), last fastest.
        """
        if self.policies is not None:
            if self.policies.shape[1] != policy_len:
                raise ModelError("policies", f"have length {self.policies.shape[1]} but the "
                                 f"config asks for policy_len={policy_len}")
            return self.policies
        control = self.control_fac_idx if control_fac_idx is None else tuple(control_fac_idx)
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
        """The model of a pymdp 0.0.7.1 ``Agent`` (its A, B, C, D, E, pA, pB and policies)."""
        policies = np.array(agent.policies)
        return cls(
            A=list(agent.A), B=list(agent.B), C=list(agent.C), D=list(agent.D),
            E=np.asarray(agent.E),
            pA=None if agent.pA is None else list(agent.pA),
            pB=None if agent.pB is None else list(agent.pB),
            control_fac_idx=list(agent.control_fac_idx),
            policies=policies,
        )

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
                               pB=self.pB, control_fac_idx=self.control_fac_idx,
                               policies=self.policies)

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
        """A pymdp 0.0.7.1 ``Agent`` with this model and config (pymdp must be installed)."""
        from pymdp import utils
        from pymdp.agent import Agent

        config = config or InferenceConfig(dtype="float64")

        def obj(arrays: Sequence[np.ndarray]) -> np.ndarray:
            out = utils.obj_array(len(arrays))
            for i, a in enumerate(arrays):
                out[i] = np.array(a, dtype=np.float64)
            return out

        policies = self.policies_for(config.policy_len, config.control_fac_idx)
        pA = None
        if self.pA is not None:
            pA = obj([self._expand_over_factors(p, m) for m, p in enumerate(self.pA)])
        agent = Agent(
            A=obj(self.full_A()), B=obj(self.B), C=obj(self.C), D=obj(self.D),
            E=np.array(self.prior_over_policies(policies.shape[0])),
            pA=pA, pB=None if self.pB is None else obj(self.pB),
            policy_len=config.policy_len,
            control_fac_idx=list(config.control_fac_idx or self.control_fac_idx) or None,
            policies=[np.array(p) for p in policies],
            gamma=config.gamma, alpha=config.alpha,
            use_utility=config.use_utility, use_states_info_gain=config.use_states_info_gain,
            use_param_info_gain=config.use_param_info_gain,
            action_selection=config.action_selection, sampling_mode=config.sampling_mode,
            inference_algo=config.inference_algo,
            modalities_to_learn=(config.modalities_to_learn
                                 if config.modalities_to_learn == "all"
                                 else list(config.modalities_to_learn)),
            factors_to_learn=(config.factors_to_learn if config.factors_to_learn == "all"
                              else list(config.factors_to_learn)),
            lr_pA=config.lr_pA, lr_pB=config.lr_pB,
        )
        # pymdp 0.0.7.1's constructor ignores inference_params; set them afterwards.
        agent.inference_params = {"num_iter": config.num_iter, "dF": config.dF,
                                  "dF_tol": config.dF_tol}
        return agent

    # ----------------------------------------------------------------------------- files
    def _meta(self) -> dict[str, Any]:
        return {
            "format": "agentloop-model/1",
            "num_modalities": self.num_modalities,
            "num_factors": self.num_factors,
            "A_factor_list": [list(fl) for fl in self.A_factor_list],
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
        arrays = dict(self._named_arrays())
        arrays["meta"] = np.frombuffer(json.dumps(self._meta()).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one ``.npz`` file (no pickles)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.to_npz_bytes())
        os.replace(tmp, path)

    @classmethod
    def from_npz_bytes(cls, data: bytes, name: str = "<bytes>") -> GenerativeModel:
        """A model from :meth:`to_npz_bytes` output; ``name`` labels errors."""
        return cls._load(io.BytesIO(data), name)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GenerativeModel:
        """Read a model written by :meth:`save`; a malformed file raises :class:`ModelError`."""
        return cls._load(os.fspath(path), os.fspath(path))

    @classmethod
    def _load(cls, source: str | io.BytesIO, name: str) -> GenerativeModel:
        try:
            with np.load(source, allow_pickle=False) as npz:
                files = {k: np.array(npz[k]) for k in npz.files}
        except FileNotFoundError:
            raise
        except Exception as exc:  # zipfile/npy errors come in many types
            raise ModelError(name, f"is not a readable agentloop .npz model ({exc})") from None
        if "meta" not in files:
            raise ModelError(name, "has no 'meta' entry: not an agentloop model file")
        try:
            meta = json.loads(files["meta"].tobytes().decode())
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nested too deep
            raise ModelError(f"{name}:meta", f"is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ModelError(f"{name}:meta", f"must be a JSON object, got "
                             f"{type(meta).__name__}")
        if meta.get("format") != "agentloop-model/1":
            raise ModelError(f"{name}:meta", f"unknown format {meta.get('format')!r}")

        def take(key: str) -> np.ndarray:
            if key not in files:
                raise ModelError(name, f"is missing the array {key!r}")
            return files[key]

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
            return cls(
                A=[take(f"A_{m}") for m in range(n_m)],
                B=[take(f"B_{f}") for f in range(n_f)],
                C=[take(f"C_{m}") for m in range(n_m)],
                D=[take(f"D_{f}") for f in range(n_f)],
                E=take("E") if meta["has_E"] else None,
                pA=[take(f"pA_{m}") for m in range(n_m)] if meta["has_pA"] else None,
                pB=[take(f"pB_{f}") for f in range(n_f)] if meta["has_pB"] else None,
                A_factor_list=meta["A_factor_list"],
                control_fac_idx=meta["control_fac_idx"],
                policies=take("policies") if meta["has_policies"] else None,
            )
        except KeyError as exc:
            raise ModelError(f"{name}:meta", f"is missing the field {exc}") from None

    def __repr__(self) -> str:
        return (f"GenerativeModel(num_obs={list(self.num_obs)}, "
                f"num_states={list(self.num_states)}, "
                f"num_controls={list(self.num_controls)}, "
                f"A_factor_list={[list(f) for f in self.A_factor_list]})")


def _factor_list_or_empty(name: str, value: Sequence[int], n_factors: int) -> list[int]:
    items = list(value)
    return [] if not items else _factor_list(name, items, n_factors)
