"""Conversion to and from pymdp 0.0.7.1 ``Agent`` objects (pymdp is imported only to export)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from engine.model.config import InferenceConfig


class PymdpExportable(Protocol):
    """What :func:`pymdp_agent` reads from a model (``GenerativeModel`` is one)."""

    B: tuple[np.ndarray, ...]
    C: tuple[np.ndarray, ...]
    D: tuple[np.ndarray, ...]
    pA: tuple[np.ndarray, ...] | None
    pB: tuple[np.ndarray, ...] | None
    control_fac_idx: tuple[int, ...]

    def full_A(self) -> list[np.ndarray]: ...

    def _expand_over_factors(self, arr: np.ndarray, m: int) -> np.ndarray: ...

    def policies_for(self, policy_len: int, control_fac_idx: Sequence[int] | None = None
                     ) -> np.ndarray: ...

    def prior_over_policies(self, n_policies: int) -> np.ndarray: ...


def pymdp_model_arguments(agent: Any) -> dict[str, Any]:
    """The ``GenerativeModel`` keyword arguments of a pymdp ``Agent``'s A, B, C, D, E, pA, pB,
    control factors and policies."""
    policies = np.array(agent.policies)
    return dict(
        A=list(agent.A), B=list(agent.B), C=list(agent.C), D=list(agent.D),
        E=np.asarray(agent.E),
        pA=None if agent.pA is None else list(agent.pA),
        pB=None if agent.pB is None else list(agent.pB),
        control_fac_idx=list(agent.control_fac_idx),
        policies=policies,
    )


def pymdp_agent(model: PymdpExportable, config: InferenceConfig | None) -> Any:
    """A pymdp ``Agent`` with ``model``'s arrays and ``config`` (default: float64 defaults)."""
    from pymdp import utils
    from pymdp.agent import Agent

    config = config or InferenceConfig(dtype="float64")

    def obj(arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.array(a, dtype=np.float64)
        return out

    policies = model.policies_for(config.policy_len, config.control_fac_idx)
    pA = None
    if model.pA is not None:
        pA = obj([model._expand_over_factors(p, m) for m, p in enumerate(model.pA)])
    agent = Agent(
        A=obj(model.full_A()), B=obj(model.B), C=obj(model.C), D=obj(model.D),
        E=np.array(model.prior_over_policies(policies.shape[0])),
        pA=pA, pB=None if model.pB is None else obj(model.pB),
        policy_len=config.policy_len,
        control_fac_idx=list(config.control_fac_idx or model.control_fac_idx) or None,
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

