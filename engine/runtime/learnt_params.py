"""The parameters of a learning population in shared memory: each agent's own Dirichlet
counts and the normalised arrays the kernels read from them, and the shared rest.

``ParamSpec`` says which of the four parameter arrays (A, pA, B transposed, pB transposed,
flat rows as :mod:`engine.kernels.cpu_learning` reads them) are one row per agent and which
one shared row; :func:`chunk_params` hands the kernels a chunk's rows. Design notes:
docs/learning.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engine.kernels import cpu_learning
from engine.model.config import InferenceConfig

#: the parameter arrays, in ``KernelParams`` order
PARAM_NAMES = ("A", "pA", "Bt", "pBt")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """Row length of each parameter array (``PARAM_NAMES`` order) and which are per agent;
    the kernels' learning flags (picklable, for workers)."""

    sizes: tuple[int, ...]
    per_agent: tuple[bool, ...]
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
    def of(params: cpu_learning.KernelParams) -> ParamSpec:
        """The spec of one agent's kernel parameters (``Agents(model, 1, config)._kp``)."""
        return ParamSpec(
            sizes=tuple(int(getattr(params, n).shape[1]) for n in PARAM_NAMES),
            per_agent=per_agent_flags(params.learn_A, params.learn_B),
            learn_A=bool(params.learn_A), learn_B=bool(params.learn_B),
            lr_pA=float(params.lr_pA), lr_pB=float(params.lr_pB),
            learn_modality=tuple(bool(v) for v in params.learn_modality),
            learn_factor=tuple(bool(v) for v in params.learn_factor),
            pA_gain=bool(params.pA_gain), pB_gain=bool(params.pB_gain),
            learn_first=bool(params.learn_first))

    def per_agent_arrays(self, n_agents: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """The per-agent parameter arrays' shapes and dtypes, named ``param_<name>``."""
        return {field_name(name): ((n_agents, size), "float64")
                for name, size, mine in zip(PARAM_NAMES, self.sizes, self.per_agent, strict=True)
                if mine}

    def shared_names(self) -> tuple[str, ...]:
        """The parameter arrays every agent shares (one row)."""
        return tuple(n for n, mine in zip(PARAM_NAMES, self.per_agent, strict=True) if not mine)

    def bytes_per_agent(self) -> int:
        """Shared-memory bytes of one agent's own parameters."""
        return 8 * sum(s for s, mine in zip(self.sizes, self.per_agent, strict=True) if mine)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def per_agent_flags(learn_A: bool, learn_B: bool) -> tuple[bool, ...]:
    """Which of ``PARAM_NAMES`` each agent owns: A and pA when it learns A, B and pB when it
    learns B (the counts it does not learn are only read, so they are shared)."""
    return (bool(learn_A), bool(learn_A), bool(learn_B), bool(learn_B))


def field_name(name: str) -> str:
    """A per-agent parameter array's name among the population's arrays."""
    return f"param_{name}"


def learns(config: InferenceConfig) -> bool:
    """The config needs per-agent or parameter kernels (learning or parameter gain)."""
    return bool(config.learn_A or config.learn_B or config.use_param_info_gain)


def initial_rows(params: cpu_learning.KernelParams) -> dict[str, np.ndarray]:
    """Each parameter array's starting row (every agent starts from the model's)."""
    return {name: np.ascontiguousarray(getattr(params, name)[0], dtype=np.float64)
            for name in PARAM_NAMES}


class ChunkParams:
    """A population's parameter arrays (per agent and shared, named as ``PARAM_NAMES``) and
    its learning flags, handing the kernels a chunk's rows."""

    def __init__(self, spec: ParamSpec, arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.arrays = arrays
        self._modality = np.array(spec.learn_modality, dtype=np.bool_)
        self._factor = np.array(spec.learn_factor, dtype=np.bool_)

    def rows(self, lo: int, hi: int, staged: dict[str, np.ndarray] | None = None
             ) -> cpu_learning.KernelParams:
        """The kernels' parameters for agents ``lo..hi``: their rows of the per-agent arrays
        (of ``staged``, by field name, when given: a journal's first ``hi - lo`` rows), the
        shared arrays whole."""
        spec = self.spec
        rows = []
        for name, mine in zip(PARAM_NAMES, spec.per_agent, strict=True):
            if not mine:
                rows.append(self.arrays[name])
            elif staged is None:
                rows.append(self.arrays[name][lo:hi])
            else:
                rows.append(staged[field_name(name)][:hi - lo])
        return cpu_learning.KernelParams(
            *rows, spec.learn_A, spec.learn_B, spec.lr_pA, spec.lr_pB, self._modality,
            self._factor, spec.pA_gain, spec.pB_gain, spec.learn_first)


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
