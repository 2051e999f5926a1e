"""The parameters of a learning population: each agent's own entries of its Dirichlet counts
and of the normalised arrays the kernels read from them, and the shared rest.

Four parameter arrays feed :mod:`engine.kernels.cpu_learning` as flat rows (A, pA, B
transposed, pB transposed; ``PARAM_NAMES``). Every agent starts from one shared row of each;
an agent stores only the entries that learning can ever move away from that row
(:func:`compact_indices`), and the kernels scatter them into a full scratch row around each
step. ``ParamSpec`` says how many entries each agent owns; ``ChunkParams`` hands the kernels a
chunk's rows. Design notes and the invariant: docs/learning.md.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from engine.kernels import cpu_learning
from engine.model.config import InferenceConfig
from engine.model.generative_model import GenerativeModel
from engine.model.layout import ModelLayout

#: the parameter arrays, in ``KernelParams`` order
PARAM_NAMES = ("A", "pA", "Bt", "pBt")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """Full row length of each parameter array (``PARAM_NAMES`` order), the entries each
    agent owns of it (0: shared whole), the model's block shapes and the kernels' learning
    flags (picklable, for workers)."""

    sizes: tuple[int, ...]
    compact: tuple[int, ...]
    num_obs: tuple[int, ...]
    num_states: tuple[int, ...]
    num_controls: tuple[int, ...]
    learn_A: bool
    learn_B: bool
    lr_pA: float
    lr_pB: float
    learn_modality: tuple[bool, ...]
    learn_factor: tuple[bool, ...]
    pA_gain: bool
    pB_gain: bool
    learn_first: bool

    @staticmethod
    def of(params: cpu_learning.KernelParams, model: GenerativeModel | ModelLayout
           ) -> ParamSpec:
        """The spec of kernel parameters (``Agents(model, 1, config).kernel_params``) of
        ``model`` (or its layout)."""
        return ParamSpec(
            sizes=tuple(int(getattr(params, f"{n}0").shape[0]) for n in PARAM_NAMES),
            compact=tuple(int(getattr(params, f"{n}_idx").shape[0]) for n in PARAM_NAMES),
            num_obs=tuple(int(o) for o in model.num_obs),
            num_states=tuple(int(s) for s in model.num_states),
            num_controls=tuple(int(u) for u in model.num_controls),
            learn_A=bool(params.learn_A), learn_B=bool(params.learn_B),
            lr_pA=float(params.lr_pA), lr_pB=float(params.lr_pB),
            learn_modality=tuple(bool(v) for v in params.learn_modality),
            learn_factor=tuple(bool(v) for v in params.learn_factor),
            pA_gain=bool(params.pA_gain), pB_gain=bool(params.pB_gain),
            learn_first=bool(params.learn_first))

    @property
    def per_agent(self) -> tuple[bool, ...]:
        """Which of ``PARAM_NAMES`` has entries of each agent's own."""
        return tuple(c > 0 for c in self.compact)

    def per_agent_arrays(self, n_agents: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """The per-agent parameter arrays' shapes and dtypes, named ``param_<name>``: each
        agent's own entries (``compact_indices``) of the array."""
        return {field_name(name): ((n_agents, size), "float64")
                for name, size in zip(PARAM_NAMES, self.compact, strict=True) if size}

    def bytes_per_agent(self) -> int:
        """Shared-memory bytes of one agent's own parameters."""
        return 8 * sum(self.compact)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def per_agent_flags(learn_A: bool, learn_B: bool) -> tuple[bool, ...]:
    """Which of ``PARAM_NAMES`` an agent may own entries of: A and pA when it learns A, B and
    pB when it learns B (the counts it does not learn are only read, so they are shared)."""
    return (bool(learn_A), bool(learn_A), bool(learn_B), bool(learn_B))


def field_name(name: str) -> str:
    """A per-agent parameter array's name among the population's arrays."""
    return f"param_{name}"


def learns(config: InferenceConfig) -> bool:
    """The config needs per-agent or parameter kernels (learning or parameter gain)."""
    return bool(config.learn_A or config.learn_B or config.use_param_info_gain)


def base_rows(model: GenerativeModel) -> dict[str, np.ndarray]:
    """The four parameter arrays' starting rows, float64, as the kernels address them: A and
    pA per modality ``(O_m, J)`` over every joint state, B and pB per factor ``(U, S, S)``
    (next state by previous), concatenated; a missing pA / pB is one zero."""
    full = model.with_full_A()
    joint = math.prod(full.num_states)

    def flat_A(arrays: Any) -> np.ndarray:
        return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, joint).ravel()
                               for a in arrays])

    def flat_Bt(arrays: Any) -> np.ndarray:
        return np.concatenate([np.transpose(np.asarray(b, dtype=np.float64), (2, 0, 1)).ravel()
                               for b in arrays])

    return {"A": flat_A(full.A), "pA": flat_A(full.pA) if full.pA is not None else np.zeros(1),
            "Bt": flat_Bt(full.B),
            "pBt": flat_Bt(full.pB) if full.pB is not None else np.zeros(1)}


def _normalised(p: np.ndarray) -> np.ndarray:
    """``p`` (..., R, C) over its columns as the kernels normalise: a sum over R in order,
    then a divide (bit for bit)."""
    total = np.zeros(p.shape[:-2] + p.shape[-1:])
    for r in range(p.shape[-2]):
        total = total + p[..., r, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return p / total[..., None, :]


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.view(np.int64) != b.view(np.int64)


def compact_indices(rows: dict[str, np.ndarray], spec_like: Any) -> dict[str, np.ndarray]:
    """Per parameter array, the flat positions whose value can ever differ from its starting
    row: counts that can grow (a learnt modality's or factor's entries where the array or its
    counts are positive at the start) and the normalised entries that follow them, or whose
    value the first normalisation changes. ``spec_like`` has ParamSpec's shapes and flags."""
    masks = {name: np.zeros(rows[name].size, dtype=bool) for name in PARAM_NAMES}
    joint = math.prod(spec_like.num_states)
    blocks_A = [(m, (o, joint)) for m, o in enumerate(spec_like.num_obs)]
    blocks_B = [(f, (u, s, s)) for f, (s, u) in enumerate(
        zip(spec_like.num_states, spec_like.num_controls, strict=True))]
    for learn, learnt, blocks, name, counts in (
            (spec_like.learn_A, spec_like.learn_modality, blocks_A, "A", "pA"),
            (spec_like.learn_B, spec_like.learn_factor, blocks_B, "Bt", "pBt")):
        if not learn:
            continue
        off = 0
        for k, shape in blocks:
            size = math.prod(shape)
            a = rows[name][off:off + size].reshape(shape)
            p = rows[counts][off:off + size].reshape(shape)
            grows = ((a > 0) | (p > 0)) if learnt[k] else np.zeros(shape, dtype=bool)
            masks[counts][off:off + size] = grows.ravel()
            masks[name][off:off + size] = (grows | _differs(a, _normalised(p))).ravel()
            off += size
    return {name: np.flatnonzero(masks[name]).astype(np.int64) for name in PARAM_NAMES}


def _masks(chosen: str | tuple[int, ...], count: int) -> np.ndarray:
    return np.array([chosen == "all" or k in chosen for k in range(count)], dtype=np.bool_)


def _model_indices(model: GenerativeModel, config: InferenceConfig
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``model``'s starting rows and each agent's own positions of them under ``config``."""
    rows = base_rows(model)
    return rows, compact_indices(rows, SimpleNamespace(
        num_obs=tuple(model.num_obs), num_states=tuple(model.num_states),
        num_controls=tuple(model.num_controls), learn_A=bool(config.learn_A),
        learn_B=bool(config.learn_B),
        learn_modality=_masks(config.modalities_to_learn, len(model.num_obs)),
        learn_factor=_masks(config.factors_to_learn, len(model.num_states))))


def own_entries(model: GenerativeModel, config: InferenceConfig) -> tuple[int, ...]:
    """How many entries of each parameter array (``PARAM_NAMES``) every agent owns."""
    _, idx = _model_indices(model, config)
    return tuple(int(idx[name].size) for name in PARAM_NAMES)


def kernel_params(model: GenerativeModel, config: InferenceConfig, n: int
                  ) -> cpu_learning.KernelParams:
    """The parameter kernels' arrays for ``n`` agents starting from ``model``'s: each agent's
    own entries (``compact_indices``), their positions and the shared starting rows."""
    rows, idx = _model_indices(model, config)
    learn_modality = _masks(config.modalities_to_learn, len(model.num_obs))
    learn_factor = _masks(config.factors_to_learn, len(model.num_states))
    own = [np.tile(rows[name][idx[name]], (n, 1)) for name in PARAM_NAMES]
    return cpu_learning.KernelParams(
        *own, *(idx[name] for name in PARAM_NAMES), *(rows[name] for name in PARAM_NAMES),
        bool(config.learn_A), bool(config.learn_B), float(config.lr_pA), float(config.lr_pB),
        learn_modality, learn_factor,
        bool(config.use_param_info_gain and model.pA is not None),
        bool(config.use_param_info_gain and model.pB is not None),
        bool(config.learn_before_policies))


def expand(params: cpu_learning.KernelParams, name: str, rows: slice | None = None
           ) -> np.ndarray:
    """Full rows ``(k, size)`` of parameter array ``name`` for agents ``rows`` (all: None),
    rebuilt from their own entries and the shared row (a copy)."""
    own = getattr(params, name)[slice(None) if rows is None else rows]
    return _expand(getattr(params, f"{name}0"), getattr(params, f"{name}_idx"), own)


def _expand(base: np.ndarray, idx: np.ndarray, own: np.ndarray) -> np.ndarray:
    out = np.tile(base, (own.shape[0], 1))
    out[:, idx] = own
    return out


class ChunkParams:
    """A population's parameter arrays (each agent's own entries, and the shared starting
    rows) and its learning flags, handing the kernels a chunk's rows."""

    def __init__(self, spec: ParamSpec, n_agents: int, own: dict[str, np.ndarray],
                 base: dict[str, np.ndarray]) -> None:
        """``own``: the per-agent arrays by parameter name (those ``spec`` has); ``base``:
        every parameter array's starting row ``(1, size)``."""
        self.spec = spec
        self.own = own
        self.base = {name: base[name][0] for name in PARAM_NAMES}
        self.idx = compact_indices(self.base, spec)
        for name, size in zip(PARAM_NAMES, spec.compact, strict=True):
            if self.idx[name].size != size:
                raise ValueError(f"parameter {name}: {self.idx[name].size} own entries from the "
                                 f"shared rows, the spec has {size}")
        self._none = np.zeros((n_agents, 0))
        self._modality = np.array(spec.learn_modality, dtype=np.bool_)
        self._factor = np.array(spec.learn_factor, dtype=np.bool_)

    def rows(self, lo: int, hi: int, staged: dict[str, np.ndarray] | None = None
             ) -> cpu_learning.KernelParams:
        """The kernels' parameters for agents ``lo..hi``: their rows of the per-agent arrays
        (of ``staged``, by field name, when given: a journal's first ``hi - lo`` rows)."""
        spec = self.spec
        own = []
        for name, mine in zip(PARAM_NAMES, spec.per_agent, strict=True):
            if not mine:
                own.append(self._none[lo:hi])
            elif staged is None:
                own.append(self.own[name][lo:hi])
            else:
                own.append(staged[field_name(name)][:hi - lo])
        return cpu_learning.KernelParams(
            *own, *(self.idx[n] for n in PARAM_NAMES), *(self.base[n] for n in PARAM_NAMES),
            spec.learn_A, spec.learn_B, spec.lr_pA, spec.lr_pB, self._modality,
            self._factor, spec.pA_gain, spec.pB_gain, spec.learn_first)

    def full(self, name: str, rows: slice | None = None) -> np.ndarray:
        """Full rows ``(k, size)`` of parameter array ``name`` for agents ``rows`` (all:
        None), rebuilt from their own entries and the shared row (a copy)."""
        own = self.own.get(name, self._none)[slice(None) if rows is None else rows]
        return _expand(self.base[name], self.idx[name], own)


def drift(now: np.ndarray, start: np.ndarray, offsets: np.ndarray, outcomes: np.ndarray
          ) -> float:
    """How far counts have moved: the mean over agents (rows of ``now``) of the KL divergence
    of their expected distributions (normalised columns) from ``start``'s (one row), averaged
    over each array's columns and summed over arrays. Array ``k`` is the flat block
    ``offsets[k]:offsets[k + 1]`` of ``outcomes[k]`` rows (A's modalities), or of
    ``-outcomes[k]`` (B transposed: per action, next states by previous states)."""
    total = np.zeros(now.shape[0])
    for k in range(len(offsets) - 1):
        n_out = int(outcomes[k])
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        if n_out > 0:
            shape, axis = (n_out, (hi - lo) // n_out), 1
        else:
            shape, axis = (-1, -n_out, -n_out), 2
        p = now[:, lo:hi].reshape(now.shape[0], *shape)
        q = start[lo:hi].reshape(1, *shape)
        p = p / p.sum(axis=axis, keepdims=True)
        q = q / q.sum(axis=axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
        total += terms.sum(axis=axis).reshape(now.shape[0], -1).mean(axis=1)
    return float(total.mean()) if now.shape[0] else 0.0
